import Foundation
import ArgumentParser
import MergeKit

@main
struct MergeCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-cli",
        abstract: "Merge fine-tuned checkpoints of one base model through task vectors.",
        discussion: """
            Checkpoints are .safetensors files or Hugging Face directories (model.safetensors, or \
            shards with a *.safetensors.index.json), or PyTorch checkpoints (a .bin/.pt/.pth/.ckpt \
            state dict, pytorch_model.bin, *.bin.index.json shards), read without running their \
            pickle. Exit status: 0 on success, 1 when the inputs \
            cannot be merged (the message names the file, the tensor and the fix), 64 for \
            malformed arguments.
            """,
        // Grouped in the root's help as a newcomer looks for them; parsing does not depend on
        // the groups. The method subcommands come from the method descriptions (negate after
        // task-arithmetic).
        groupedSubcommands: [
            CommandGroup(name: "Merge method", subcommands: MethodCommands.all.prefix(1) + [NegateCommand.self]
                         + MethodCommands.all.dropFirst() + [MethodsCommand.self]),
            CommandGroup(name: "Recipe and sweep", subcommands: [
                RunCommand.self,
                SweepCommand.self,
                AssembleCommand.self,
                StatsCommand.self,
            ]),
            CommandGroup(name: "Checkpoint", subcommands: [
                InspectCommand.self,
                VerifyCommand.self,
                ConvertCommand.self,
                TaskVectorCommand.self,
                AnalyzeCommand.self,
                ExtractLoRACommand.self,
            ]),
            CommandGroup(name: "Model", subcommands: [
                InitCommand.self,
                EvalCommand.self,
                FinetuneCommand.self,
                LinearizeCommand.self,
                DisentanglementCommand.self,
                WEMoECommand.self,
                WEMoETrainCommand.self,
                AdaMergingCommand.self,
                ATLASCommand.self,
                RegMeanCommand.self,
                FisherCommand.self,
            ]),
        ]
    )

    /// Installs the interrupt handler (SIGINT/SIGTERM remove temporary outputs and exit 130/143),
    /// then parses and runs the command as usual.
    /// With `--json`, an argument error is also printed as a JSON error document on stdout
    /// (`ErrorOutput`), so that scripts get one JSON document whatever happens.
    static func main() {
        // OpenBLAS's generic fallback replaced by the kernels this CPU can run (`BLAS.preferredCoreType`).
        BLAS.reexecutingWithPreferredKernels()
        TemporaryFiles.installSignalHandlers()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            // One rule for MERGEKIT_MEMORY_BUDGET, whichever command runs: a malformed value is an
            // argument error before any work.
            do throws(MergeKitError) {
                _ = try MemoryBudget.configured()
            } catch {
                throw ValidationError(error.inCLIWords.description)
            }
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            if ErrorOutput.jsonRequested,
               let json = ErrorOutput.json(parserError: error, message: message(for: error), exitCode: exitCode(for: error)) {
                print(json.serialized(indent: 2))
            }
            exit(withError: error)
        }
    }
}

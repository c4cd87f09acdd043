import Foundation
import MergeKit

/// What the engine commands (eval, finetune, wemoe, wemoe-train, disentanglement) share about
/// their inputs: the memory budget, unused-tensor warnings and the thread count.
enum EngineInputs {
    /// The memory the command may use (`MemoryBudget.configured()`).
    static func memoryBudget() throws(MergeKitError) -> MemoryBudget? { try MemoryBudget.configured() }

    /// "1 step", "2 steps".
    static func counted(_ n: Int, _ singular: String) -> String { "\(n) \(singular)\(n == 1 ? "" : "s")" }

    /// Warns on stderr about tensors of `file` the model ignores (only with --allow-unused).
    static func warnIgnored(_ file: String, _ names: [String]) {
        guard let first = names.first else { return }
        let more = names.count > 1 ? " and \(names.count - 1) more" : ""
        FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(file)): ignoring \(counted(names.count, "tensor")) the model does not use (\(TerminalText.escaped(first))\(more))\n".utf8))
    }


    /// The batch to run `command` with (see `EngineMemory.batch`), with a note on stderr when a
    /// default batch was reduced to fit.
    static func batch(_ requested: Int?, default fallback: Int, command: String, quiet: Bool,
                      estimate: (Int) -> MemoryEstimate) throws(MergeKitError) -> Int {
        let wanted = requested ?? fallback
        let budget = try memoryBudget()
        let batch = try EngineMemory.batch(wanted, chosen: requested != nil, command: command, budget: budget, estimate: estimate)
        if batch < wanted, let budget, !quiet {
            FileHandle.standardError.write(Data(("note: \(command): batches of \(wanted) images would need about "
                + "\(MemoryEstimate.format(estimate(wanted).bytes)), more than the \(MemoryEstimate.format(budget.bytes)) available "
                + "(\(budget.source)); using batches of \(batch) (accuracy and losses agree up to rounding)\n").utf8))
        }
        return batch
    }
}

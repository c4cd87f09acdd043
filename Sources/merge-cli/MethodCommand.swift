import ArgumentParser
import MergeKit

/// The subcommand of one merge method, derived from its `MethodDescription`: the name, help and
/// options all come from the description, so no method has a command type of its own.
///
/// `validate()` checks the numeric options by their rules (with the flags' words) and builds the
/// method (exit 64 before any file is opened); `run()` plans and runs the merge (exit 1 when the
/// inputs cannot be merged). `Inputs` is `InputOptions` (with --weight) or `InputPaths` for
/// methods that set their own per-task coefficients (`MethodDescription.Inputs`).
struct MethodCommand<Method: DescribedMethod, Inputs: MergeInputOptions>: ParsableCommand {
    static var configuration: CommandConfiguration {
        let description = Method.methodDescription
        return CommandConfiguration(commandName: description.info.name, abstract: description.help.abstract,
                                    discussion: MethodHelp.discussion(description))
    }

    @OptionGroup var inputs: Inputs
    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var options: MethodOptions<Method>
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var partitioning: PartitionOptions

    func validate() throws {
        for parameter in Method.methodDescription.commandLineParameters {
            guard case .number(let rule) = parameter.type, case .number(let value)? = options.values[parameter.key] else { continue }
            try ArgumentCheck.value(value, rule, flag: "--" + parameter.flag!)
        }
        try ArgumentCheck.method(method, inputs: inputs)
        try partitioning.validate(output: outputOptions.output)
        try partitioning.validate(method: method)
    }

    func run() throws {
        try runMerge(inputs, outputOptions, compute: compute.computeDType ?? .float32, partition: partitioning, method)
    }

    func method() throws(MergeKitError) -> any MergeMethod {
        try Method.methodDescription.build(commandLine: options.values, seed: options.seed)
    }
}

/// The subcommands of every registered method, in registry order.
enum MethodCommands {
    static let all: [any ParsableCommand.Type] = MethodRegistry.methods.map { command(for: $0) }

    private static func command<Method: DescribedMethod>(for method: Method.Type) -> any ParsableCommand.Type {
        switch method.methodDescription.inputs {
        case .weighted: return MethodCommand<Method, InputOptions>.self
        case .unweighted: return MethodCommand<Method, InputPaths>.self
        }
    }
}

/// Plans and runs a merge of `inputs` with `method` in `compute` (errors on stderr, exit 1); with
/// `partition`, one partition of it.
func runMerge(_ inputs: some MergeInputOptions, _ outputs: OutputOptions, compute: ComputeDType = .float32,
              partition: PartitionOptions? = nil, _ method: () throws(MergeKitError) -> any MergeMethod) throws {
    try reportingErrors { () throws(MergeKitError) in
        let (base, opened) = try inputs.open(quiet: outputs.quiet)
        var spec = outputs.spec()
        spec.compute = compute
        let plan = try MergePlan(base: base, inputs: opened, method: try method(), output: spec)
        try MergeRunner.run([plan], options: outputs, command: PartitionOptions.recordedCommand(), partition: partition)
    }
}

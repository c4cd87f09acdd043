import Foundation
import Testing
@testable import MergeKit

/// Every command's options, read from `merge-cli --experimental-dump-help`.
enum CommandOptions {
    struct Option {
        let command: String
        let flag: String
        let valueName: String
        let parsing: String
        let enumerated: Bool
    }

    static let all: [Option] = {
        let dump = try! CLI.run(["--experimental-dump-help"])
        let root = try! JSONParser.parse(Array(dump.stdout.utf8))
        var options: [Option] = []
        for command in root["command"]?["subcommands"]?.arrayValue ?? [] {
            let name = command["commandName"]!.stringValue!
            for argument in command["arguments"]?.arrayValue ?? [] where argument["kind"]?.stringValue == "option" {
                options.append(Option(command: name, flag: "--" + argument["preferredName"]!["name"]!.stringValue!,
                                      valueName: argument["valueName"]?.stringValue ?? "",
                                      parsing: argument["parsingStrategy"]?.stringValue ?? "",
                                      enumerated: argument["allValues"] != nil))
            }
        }
        return options
    }()

    static var commands: [String] { Array(Set(all.map(\.command))).sorted() }

    /// Options whose values are numbers (or grids of numbers): neither paths, names nor enumerations.
    static var numeric: [Option] {
        all.filter { !$0.enumerated && !["path", "dir", "file", "name"].contains($0.valueName) }
    }

    /// Arguments that get every command past parsing to its range checks, naming files that do not
    /// exist: a command that opened a file before checking its values would exit 1, not 64.
    static func baseline(_ command: String, output: String) -> [String] {
        let base = "missing/base", a = "missing/a", b = "missing/b", head = "missing/head", data = "missing/data"
        let merge = ["--base", base, "--model", a, "--model", b, "-o", output]
        switch command {
        case "negate", "linearize", "slerp", "nearswap", "passthrough", "arcee-fusion": return ["--base", base, "--model", a, "-o", output]
        case "run": return ["missing/recipe.yml", "-o", output]
        case "sweep": return ["--method", "ties", "--base", base, "--model", a, "--model", b, "--scale", "0.5", "-o", output]
        case "analyze": return ["--base", base, "--model", a, "--model", b]
        case "task-vector": return ["--base", base, "--finetuned", a, "-o", output]
        case "extract-lora": return ["--base", base, "--model", a, "--rank", "4", "-o", output]
        case "inspect", "verify": return ["missing/model.safetensors"]
        case "convert": return ["missing/pytorch_model.bin", "-o", output]
        case "eval": return ["--model", a, "--head", head, "--data", data]
        case "finetune": return ["--base", base, "--head", head, "--data", data, "-o", output]
        case "disentanglement": return ["--base", base, "--task-vector", a, "--task-vector", b, "--head", head, "--head", head,
                                        "--data", data, "--data", data]
        case "wemoe": return ["--base", base, "--model", a, "-o", output]
        case "wemoe-train": return ["--model", a, "--data", data, "--head", head, "-o", output]
        case "adamerging", "atlas": return ["--base", base, "--model", a, "--data", data, "--head", head, "-o", output]
        case "methods": return []
        default: return merge
        }
    }

    /// `arguments` with `flag` set to `values` (replacing the value it had, if any).
    static func setting(_ flag: String, to values: [String], in arguments: [String]) -> [String] {
        var result: [String] = []
        var i = 0
        while i < arguments.count {
            if arguments[i] == flag || (flag == "--output" && arguments[i] == "-o") { i += 2; continue }
            result.append(arguments[i])
            i += 1
        }
        return result + values.flatMap { [flag, $0] }
    }
}

@Suite("Command-line arguments")
struct ArgumentTests {
    let fixtures = TestSupport.fixture("")

    @Test("Every numeric option of every command parses its value unconditionally, so negative numbers are values")
    func numericOptionsAreUnconditional() {
        #expect(CommandOptions.commands.count >= 20)
        let numeric = CommandOptions.numeric
        #expect(numeric.count >= 80 && numeric.contains { $0.flag == "--weight" } && numeric.contains { $0.flag == "--alphas" })
        for option in numeric {
            #expect(option.parsing == "unconditional", "\(option.command) \(option.flag) <\(option.valueName)> parses \(option.parsing)")
        }
    }

    @Test("Every numeric option of every command takes -1 as its value (a range error at most, never a parse error)")
    func everyOptionTakesMinusOne() throws {
        let dir = TestSupport.temporaryDirectory("arguments")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for option in CommandOptions.numeric {
            let baseline = CommandOptions.baseline(option.command, output: dir + "/out")
            let value = option.flag == "--grid" || option.flag == "--param" ? "lambda=-1" : (option.flag == "--scale" && option.command == "sweep" ? "-1:1:1" : "-1")
            var arguments = CommandOptions.setting(option.flag, to: [value], in: baseline)
            if option.flag == "--weight" { arguments += ["--weight", "1"] }
            if option.flag == "--grid" { arguments = CommandOptions.setting("--scale", to: [], in: arguments) }
            let run = try CLI.run([option.command] + arguments, in: dir)
            #expect(!run.stderr.contains("Missing value") && !run.stderr.contains("Unknown option"),
                    "\(option.command) \(option.flag) -1: \(run.stderr)")
            #expect(run.status == 1 || run.status == 64, "\(option.command) \(option.flag) -1: \(run.status) \(run.stderr)")
        }
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Negative values work where they are valid: the help's analogy, negative λ on every λ command, sweeps, α grids")
    func negativeValues() throws {
        let dir = TestSupport.temporaryDirectory("arguments")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The analogy exactly as `task-arithmetic --help` shows it, with a real option after the -1.
        let help = try CLI.run(["task-arithmetic", "--help"])
        #expect(help.stdout.contains("--weight 1 --weight 1 --weight -1 -o out"), "\(help.stdout)")
        let analogy = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_c", "--model", "f32/ft_b", "--model", "f32/ft_a",
                                   "--weight", "1", "--weight", "1", "--weight", "-1", "-o", dir + "/analogy.safetensors", "--json"], in: fixtures)
        #expect(analogy.status == 0, "\(analogy.stderr)")
        let summary = try JSONParser.parse(Array(analogy.stdout.utf8))
        #expect(summary["inputs"]?.arrayValue?.map { $0["weight"]?.doubleValue } == [1, 1, -1])
        // The same merge with --weight=-1 spelled the old way gives the same bytes.
        let spelled = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_c", "--model", "f32/ft_b", "--model", "f32/ft_a",
                                   "--weight", "1", "--weight", "1", "--weight=-1", "-o", dir + "/spelled.safetensors"], in: fixtures)
        #expect(spelled.status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/analogy.safetensors")) == (try Data(contentsOf: URL(fileURLWithPath: dir + "/spelled.safetensors"))))

        for command in ["task-arithmetic", "negate", "ties", "dare", "breadcrumbs", "magmax", "tsv-m", "iso-c"] {
            let inputs = command == "negate" ? ["--model", "f32/ft_a"] : ["--model", "f32/ft_a", "--model", "f32/ft_b"]
            let run = try CLI.run([command, "--base", "f32/base"] + inputs + ["--scale", "-0.5", "--dry-run", "-o", dir + "/x"], in: fixtures)
            #expect(run.status == 0 && run.stdout.contains("\"scale\":-0.5"), "\(command): \(run.stderr)\(run.stdout.prefix(200))")
        }
        let sweep = try CLI.run(["sweep", "--method", "task_arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--scale", "-1:1:1",
                                 "--dry-run", "-o", dir + "/sweep"], in: fixtures)
        #expect(sweep.status == 0 && sweep.stdout.contains("# point 0: lambda = -1"), "\(sweep.stderr)")
        // disentanglement takes a grid starting with a minus sign (it then fails on the missing files: exit 1).
        let alphas = try CLI.run(["disentanglement"] + CommandOptions.baseline("disentanglement", output: "") + ["--alphas", "-1,0,1"], in: dir)
        #expect(alphas.status == 1 && alphas.stderr.contains("missing/"), "\(alphas.stderr)")
        #expect(TestSupport.listing(dir).sorted() == ["analogy.safetensors", "spelled.safetensors"])
    }

    /// Out-of-range values, each with the message every command that has the option must give.
    static let badValues: [(flag: String, values: [String], message: String)] = [
        ("--scale", ["nan"], MethodParameter.scale.problem(.nan, label: "--scale")!),
        ("--scale", ["inf"], MethodParameter.scale.problem(.infinity, label: "--scale")!),
        ("--density", ["1.5"], MethodParameter.density.problem(1.5, label: "--density")!),
        ("--density", ["0"], MethodParameter.density.problem(0, label: "--density")!),
        ("--drop-rate", ["1"], MethodParameter.dropRate.problem(1, label: "--drop-rate")!),
        ("--gamma", ["1"], MethodParameter.gamma.problem(1, label: "--gamma")!),
        ("--gamma", ["-0.1"], MethodParameter.gamma.problem(-0.1, label: "--gamma")!),
        ("--weight", ["nan", "1"], MethodParameter.weight.problem(.nan, label: "--weight")!),
        ("--max-shard-size", ["0.4"], "--max-shard-size must be at least 1 byte, not 0.4"),
        ("--output", [""], "--output must name a file or directory, not an empty string"),
        ("--threads", ["0"], "--threads must be at least 1, not 0"),
        ("--batch-size", ["0"], "--batch-size must be at least 1, not 0"),
    ]

    @Test("Every out-of-range value exits 64 before any file is opened, with the same message on every command that has the option")
    func outOfRangeValues() throws {
        let dir = TestSupport.temporaryDirectory("arguments")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The baselines name missing files: without a bad value they fail on those (exit 1).
        for command in CommandOptions.commands where command != "methods" {
            let run = try CLI.run([command] + CommandOptions.baseline(command, output: dir + "/out"), in: dir)
            #expect(run.status == 1 && run.stderr.contains("missing/"), "\(command): \(run.status) \(run.stderr)")
        }
        var checked = 0
        for bad in Self.badValues {
            let commands = CommandOptions.all.filter { $0.flag == bad.flag }.map(\.command)
            #expect(!commands.isEmpty, "no command has \(bad.flag)")
            for command in commands {
                let arguments = CommandOptions.setting(bad.flag, to: bad.values, in: CommandOptions.baseline(command, output: dir + "/out"))
                let run = try CLI.run([command] + arguments, in: dir)
                #expect(run.status == 64 && run.stderr.contains("Error: " + bad.message + "\n"),
                        "\(command) \(bad.flag) \(bad.values): \(run.status) \(run.stderr)")
                checked += 1
            }
        }
        #expect(checked >= 90)
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("What a method refuses besides ranges is an argument error too: no sign vote, weights it cannot take, Σw = 0")
    func methodRefusals() throws {
        let dir = TestSupport.temporaryDirectory("arguments")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = ["--base", "missing/base", "--model", "missing/a", "--model", "missing/b", "-o", dir + "/out"]
        for (arguments, message) in [
            (["ties", "--vote", "none"], "TIES needs a sign vote, mass or weighted, not none"),
            (["dare", "--combine", "ties", "--vote", "none"], "DARE-TIES needs a sign vote, mass or weighted, not none"),
            (["magmax", "--weight", "1", "--weight", "0.5"], "magmax sets its own per-task coefficients"),
            (["model-stock", "--weight", "2", "--weight", "1"], "model-stock sets its own per-task coefficients"),
            (["linear", "--weight", "1", "--weight", "-1"], "sum to 0"),
        ] {
            let run = try CLI.run(arguments + inputs, in: dir)
            #expect(run.status == 64 && run.stderr.contains(message), "\(arguments): \(run.status) \(run.stderr)")
            #expect(!run.stderr.contains("--vote") && !run.stderr.contains("--weight") && !run.stderr.contains("--no-normalize"),
                    "library words, not another command's flags: \(run.stderr)")
        }
        #expect(TestSupport.listing(dir).isEmpty)
    }
}

@Suite("sweep arguments")
struct SweepArgumentTests {
    let fixtures = TestSupport.fixture("")
    let inputs = ["--base", "f16/base", "--model", "f16/ft_a", "--model", "f16/ft_b"]

    @Test("Flags become recipe values, never YAML text: a --param holding YAML adds no key, messages cite no hidden text")
    func noYAMLFromFlags() throws {
        let dir = TestSupport.temporaryDirectory("sweep-args")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (param, message) in [
            ("density=0.5\nmerge_method: dare", "--param density must be a number, not \"0.5\\nmerge_method: dare\""),
            ("vote=mass\nmerge_method: task_arithmetic", "vote = \"mass\\nmerge_method: task_arithmetic\" is not one of none, mass, weighted"),
            ("trim_scope=tensor\nsweep: {lambda: [1, 2]}", "trim_scope = \"tensor\\nsweep: {lambda: [1, 2]}\" is not one of global, tensor"),
        ] {
            let run = try CLI.run(["sweep", "--method", "ties"] + inputs + ["--scale", "0.5", "--param", param, "-o", dir + "/out"], in: fixtures)
            #expect(run.status == 64 && run.stderr.contains(message), "\(param): \(run.status) \(run.stderr)")
        }
        // A missing input is named as given, with no line of a recipe the user never wrote.
        let missing = try CLI.run(["sweep", "--method", "ties", "--base", "f16/base", "--model", "f16/nope", "--scale", "0.5", "-o", dir + "/out"], in: fixtures)
        #expect(missing.status == 1 && missing.stderr.contains("error: f16/nope: does not exist") && !missing.stderr.contains("line "), "\(missing.stderr)")
        #expect(TestSupport.listing(dir).isEmpty)

        // Paths with YAML syntax in them are recorded faithfully in each point's recipe.yml, which runs as a recipe.
        let odd = dir + "/odd: \"name\" #1\n- x"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: false)
        for file in ["base", "ft_a"] {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("f32/\(file)/model.safetensors"), toPath: odd + "/\(file).safetensors")
        }
        let sweep = try CLI.run(["sweep", "--method", "task_arithmetic", "--base", odd + "/base.safetensors", "--model", odd + "/ft_a.safetensors",
                                 "--weight", "-1", "--scale", "0.5,1", "--param", "normalize=false", "-o", dir + "/sweep"], in: fixtures)
        #expect(sweep.status == 0, "\(sweep.stderr)")
        let recipe = try Recipe.load(path: dir + "/sweep/point-001/recipe.yml")
        #expect(recipe.baseModel == odd + "/base.safetensors" && recipe.inputs.map(\.path) == [odd + "/ft_a.safetensors"])
        #expect(recipe.inputs.first?.parameters == ["weight": .number(-1)] && recipe.parameters == ["normalize": .bool(false)])
        #expect(recipe.sweep.map(\.name) == ["lambda"] && recipe.sweep.first?.values == [.number(0.5), .number(1)])
        // The point's model card names the sweep's recipe rather than repeating it (P cards holding
        // a recipe of P values would make a sweep's memory quadratic in its points).
        let card = try String(contentsOfFile: dir + "/sweep/point-001/README.md", encoding: .utf8)
        #expect(card.contains("The sweep's recipe is `recipe.yml`") && card.contains("`lambda = 1") && !card.contains("```yaml"), "\(card)")
        let rerun = try CLI.run(["run", dir + "/sweep/point-001/recipe.yml", "-o", dir + "/rerun"], in: fixtures)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        for point in ["point-000", "point-001"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/sweep/\(point)/model.safetensors"))
                    == (try Data(contentsOf: URL(fileURLWithPath: "\(dir)/rerun/\(point)/model.safetensors"))), "\(point)")
        }
    }

    @Test("A repeated axis, a point given twice, a step that rounds points together, an empty or huge grid exit 64 before any file is opened")
    func badGrids() throws {
        let dir = TestSupport.temporaryDirectory("sweep-args")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = ["--base", "missing/base", "--model", "missing/a"]
        for (arguments, message) in [
            (["--scale", "0.5", "--grid", "lambda=1,2"], "--grid lambda gives lambda again (--scale gave it)"),
            (["--grid", "density=0.1", "--grid", "density=0.2"], "--grid density gives density again (--grid density gave it)"),
            (["--density", "0.5", "--grid", "density=0.2"], "--grid density gives density again (--density gave it)"),
            (["--scale", "0:1:0.5", "--param", "lambda=1"], "--param lambda gives lambda again (--scale gave it)"),
            (["--scale", "0.5,1,0.5"], "--scale: 0.5 appears twice"),
            (["--scale", "1:1.000000000001:1e-14"], "--scale: the step is so small that points round to the same value (1)"),
            (["--scale", ""], "--scale: the grid is empty"),
            (["--density", "0.1,,0.2"], "--density: 0.1,,0.2 has an empty entry"),
            (["--scale", "0:1:0"], "--scale: 0:1:0 needs a positive step"),
            (["--scale", "0:1:1e-5"], "--scale: 0:1:1e-5 has more than 10000 points, the most a sweep writes"),
            (["--scale", "0:1:0.01", "--density", "0.01:1:0.01"], "The grids make 10100 points; a sweep writes at most 10000"),
            (["--grid", "lambda"], "--grid lambda is not NAME=VALUE"),
            (["--grid", "nope=1"], "--grid nope: ties has no parameter nope"),
            (["--scale", "1", "--param", "lambda"], "--param lambda is not NAME=VALUE"),
        ] {
            let run = try CLI.run(["sweep", "--method", "ties"] + missing + arguments + ["-o", dir + "/out"], in: dir)
            #expect(run.status == 64 && run.stderr.contains(message), "\(arguments): \(run.status) \(run.stderr)")
        }
        let method = try CLI.run(["sweep", "--method", "tie"] + missing + ["--scale", "1", "-o", dir + "/out"], in: dir)
        #expect(method.status == 64 && method.stderr.contains("--method tie is not a merge method"), "\(method.stderr)")
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("ties: the command follows the paper and the sweep follows recipes (mergekit); both helps say so, and each does what its help says")
    func tiesSemantics() throws {
        let dir = TestSupport.temporaryDirectory("sweep-args")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tiesHelp = try CLI.run(["ties", "--help"]).stdout.replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
        // The presets' values, generated from the TIES description.
        #expect(tiesHelp.contains("this command follows the paper preset"), "\(tiesHelp)")
        #expect(tiesHelp.contains("A recipe (`merge-cli run`) or a sweep (`merge-cli sweep --method NAME`) follows the preset its method name selects"), "\(tiesHelp)")
        #expect(tiesHelp.contains("ties selects mergekit (--density 1 --trim-scope tensor --vote weighted --merge normalized;"), "\(tiesHelp)")
        let sweepHelp = try CLI.run(["sweep", "--help"]).stdout.replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
        #expect(sweepHelp.contains("`--method ties` follows mergekit, while `merge-cli ties` follows paper"), "\(sweepHelp)")
        #expect(sweepHelp.contains("(here: --param density=0.2 --param trim_scope=global --param vote=mass --param merge=mean --param normalize=false)"), "\(sweepHelp)")

        /// Every tensor's bytes (the metadata records density per model for the recipe, once for the command).
        func bytes(_ path: String) throws -> [String: [UInt8]] {
            let checkpoint = try Checkpoint(path: path)
            return Dictionary(uniqueKeysWithValues: checkpoint.entries.map { ($0.name, Array($0.file.bytes(of: $0.info))) })
        }
        let models = ["--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b", "--model", "f32/ft_c"]
        // What the sweep's help says gives the paper's TIES is `merge-cli ties` with its defaults ...
        let paper = try CLI.run(["sweep", "--method", "ties"] + models + ["--scale", "1", "--param", "density=0.2", "--param", "trim_scope=global",
                                 "--param", "vote=mass", "--param", "merge=mean", "--param", "normalize=false", "-o", dir + "/paper"], in: fixtures)
        let command = try CLI.run(["ties"] + models + ["-o", dir + "/command.safetensors"], in: fixtures)
        #expect(paper.status == 0 && command.status == 0, "\(paper.stderr)\(command.stderr)")
        #expect(try bytes(dir + "/paper/point-000/model.safetensors") == (try bytes(dir + "/command.safetensors")))
        // ... and what the ties help says gives mergekit's is the sweep's default ties.
        let recipe = try CLI.run(["sweep", "--method", "ties"] + models + ["--scale", "1", "-o", dir + "/mergekit"], in: fixtures)
        let spelled = try CLI.run(["ties"] + models + ["--trim-scope", "tensor", "--vote", "weighted", "--merge", "normalized", "--density", "1",
                                   "-o", dir + "/spelled.safetensors"], in: fixtures)
        #expect(recipe.status == 0 && spelled.status == 0, "\(recipe.stderr)\(spelled.stderr)")
        #expect(try bytes(dir + "/mergekit/point-000/model.safetensors") == (try bytes(dir + "/spelled.safetensors")))
        // The two defaults do differ on these models.
        #expect(try bytes(dir + "/spelled.safetensors") != (try bytes(dir + "/command.safetensors")))
    }
}

import Foundation
import Testing
@testable import MergeKit

/// The method subcommands are declared at run time from the method descriptions: these check that
/// ArgumentParser sees them as it would see declared options (help lines, defaults, value lists,
/// parse errors and exit 64, negative numbers as values).
@Suite("Method subcommands from descriptions")
struct MethodCommandTests {
    /// `merge-cli NAME --help`, whitespace collapsed.
    func help(_ name: String) throws -> String {
        let result = try CLI.run([name, "--help"])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
    }

    @Test("Every described command-line parameter is an option in its subcommand's help, with its doc line and default")
    func helpLists() throws {
        for description in MethodRegistry.descriptions {
            let text = try help(description.info.name)
            #expect(text.contains("OVERVIEW: \(description.help.abstract)"), "\(description.info.name)")
            for parameter in description.commandLineParameters {
                let flag = "--" + parameter.flag!
                let value = description.commandPreset.defaults[parameter.key]
                let line: String
                switch (parameter.type, value) {
                case (.flag, .bool(let on)?):
                    line = "\(flag)/--no-\(parameter.flag!) \(parameter.doc) (default: \(on ? flag : "--no-" + parameter.flag!))"
                case (.choice(let type), .string(let word)?):
                    line = "\(flag) <\(parameter.valueName ?? parameter.flag!)> \(parameter.doc) (values: \(type.words.joined(separator: ", ")); default: \(word))"
                case (.number, .number(let number)?):
                    line = "\(flag) <\(parameter.valueName ?? parameter.flag!)> \(parameter.doc) (default: \(number))"
                case (.seed, .number(let number)?):
                    line = "\(flag) <\(parameter.valueName ?? parameter.flag!)> \(parameter.doc) (default: \(UInt64(number)))"
                default:
                    Issue.record("\(description.info.name) \(flag) has no default")
                    continue
                }
                #expect(text.contains(line), "\(description.info.name): \(line)")
            }
            // Recipe-only parameters stay off the command line.
            for parameter in description.parameters where parameter.flag == nil && parameter.key != "weight" {
                #expect(!text.contains("--" + parameter.key.replacingOccurrences(of: "_", with: "-") + " "), "\(description.info.name): \(parameter.key)")
            }
        }
    }

    @Test("A word outside a choice, a malformed number and an unknown option are ArgumentParser's errors, exit 64")
    func parseErrors() throws {
        let dir = TestSupport.temporaryDirectory("method-command")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = ["--base", "b", "--model", "m", "-o", dir + "/out"]
        let cases: [([String], String)] = [
            (["ties", "--vote", "nope"], "The value 'nope' is invalid for '--vote <vote>'. Please provide one of 'none', 'mass' or 'weighted'."),
            (["tsv-m", "--null-space", "x"], "The value 'x' is invalid for '--null-space <null-space>'. Please provide one of 'drop' and 'keep'."),
            (["dare", "--drop-rate", "lots"], "The value 'lots' is invalid for '--drop-rate <p>'"),
            (["dare", "--seed", "-1"], "The value '-1' is invalid for '--seed <seed>'"),
            (["breadcrumbs", "--vote", "mass"], "Unknown option '--vote'"),
            (["magmax", "--scale", "nan"], "--scale must be a finite number, not nan"),
            (["ties", "--density", "1.5"], "--density must be in (0, 1], not 1.5 (the fraction of τ entries kept, e.g. 0.2)"),
        ]
        for (arguments, message) in cases {
            let result = try CLI.run(arguments + inputs, in: dir)
            #expect(result.status == 64 && result.stderr.contains(message), "\(arguments): \(result.status) \(result.stderr)")
        }
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Negative numbers are values (parsing: .unconditional): --scale -0.5 reaches the method")
    func negativeValues() throws {
        let fixtures = TestSupport.fixture("")
        let result = try CLI.run(["magmax", "--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b",
                                  "--scale", "-0.5", "--dry-run", "-o", "unused.safetensors"], in: fixtures)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains(#"method: magmax {"scale":-0.5}"#), "\(result.stdout)")
    }

    @Test("Options the SVD methods do not take are refused before any work, with the fix")
    func svdMethodOptions() throws {
        let dir = TestSupport.temporaryDirectory("svd-options")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = ["--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b"]
        for method in ["tsv-m", "iso-c"] {
            // The commands do not offer --weight (their help does not list it); a sweep, whose
            // inputs take weights for every method, refuses them for these methods.
            let help = try CLI.run([method, "--help"])
            #expect(help.status == 0 && help.stdout.contains("--model") && !help.stdout.contains("--weight"), "\(help.stdout)")
            let weighted = try CLI.run([method] + inputs + ["--weight", "0.5", "--weight", "1", "-o", dir + "/w.safetensors"],
                                       in: TestSupport.fixture(""))
            #expect(weighted.status == 64 && weighted.stderr.contains("Unknown option '--weight'"), "\(weighted.stderr)")
            let sweepWeighted = try CLI.run(["sweep", "--method", method] + inputs + ["--weight", "0.5", "--weight", "1", "--scale", "1",
                                                                                     "-o", dir + "/sweep-w-\(method)"], in: TestSupport.fixture(""))
            #expect(sweepWeighted.status == 64)
            #expect(sweepWeighted.stderr.contains("\(method) takes no per-model parameter \"weight\"")
                    && sweepWeighted.stderr.contains("\(method) sets its own per-task coefficients"), "\(sweepWeighted.stderr)")
            let nanScale = try CLI.run([method] + inputs + ["--scale", "nan", "-o", dir + "/s.safetensors"], in: TestSupport.fixture(""))
            #expect(nanScale.status == 64 && nanScale.stderr.contains("--scale must be a finite number, not nan"), "\(nanScale.stderr)")
            let badNull = try CLI.run([method] + inputs + ["--null-space", "zero", "-o", dir + "/n.safetensors"], in: TestSupport.fixture(""))
            #expect(badNull.status == 64, "\(badNull.stderr)")
            let sweep = try CLI.run(["sweep", "--method", method] + inputs + ["--grid", "density=0.1,0.2", "-o", dir + "/sweep-\(method)"],
                                    in: TestSupport.fixture(""))
            #expect(sweep.status == 64)
            #expect(sweep.stderr.contains("--grid density: \(method) has no parameter density")
                    && sweep.stderr.contains("lambda, null_space"), "\(sweep.stderr)")
        }
        for name in ["w", "s", "n"] { #expect(!FileManager.default.fileExists(atPath: "\(dir)/\(name).safetensors")) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/sweep-w-tsv-m") && !FileManager.default.fileExists(atPath: dir + "/sweep-w-iso-c"))
        // Methods with per-input weights keep --weight.
        let weightedHelp = try CLI.run(["task-arithmetic", "--help"])
        #expect(weightedHelp.stdout.contains("--weight"), "\(weightedHelp.stdout)")
        #expect(MethodRegistry.info(named: "tsv-m") != nil && MethodRegistry.info(named: "iso-c") != nil)
    }

    /// Every method case a subcommand runs (not negation or a sweep).
    static let commandCases: [MethodCase] = MethodCase.all.filter { if case .command = $0.form { true } else { false } }

    @Test("Each method subcommand merges end to end with the method the library builds from the same values: the same parameters and bytes",
          arguments: commandCases)
    func sameMethodAsLibrary(_ line: MethodCase) throws {
        guard case .command(let values) = line.form else { return }
        let description = try #require(MethodRegistry.descriptions.first { $0.info.name == line.method })
        // The values as the subcommand's flags.
        var flags: [String] = []
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            let flag = try #require(description.parameter(key)?.flag, "\(key) has no flag")
            switch value {
            case .number(let number): flags += ["--" + flag, "\(number)"]
            case .bool(let on): flags.append(on ? "--" + flag : "--no-" + flag)
            case .string(let word): flags += ["--" + flag, word]
            default: Issue.record("\(key): \(value) is not a command-line value")
            }
        }
        let dir = TestSupport.temporaryDirectory("method-command-e2e")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let models = line.singleInput ? ["f32/ft_b"] : ["f32/ft_a", "f32/ft_b"]
        let inputs = ["--base", "f32/base"] + models.flatMap { ["--model", $0] }
        let run = try CLI.run([line.method] + flags + inputs + ["--json", "-o", dir + "/cli.safetensors"], in: TestSupport.fixture(""))
        #expect(run.status == 0, "\(flags): \(run.stderr)")
        let summary = try JSONParser.parse(Array(run.stdout.utf8))
        let method = try LibraryMerge.method(line.method, values)
        let parameters = try JSONParser.parse(Array(JSONValue.object(method.parameters).serialized().utf8))
        #expect(summary["method"] == .string(line.method) && summary["parameters"] == parameters, "\(flags): \(run.stdout)")
        try LibraryMerge.run(method, LibraryMerge.Inputs(base: "f32/base", models: models),
                             output: OutputSpec(path: dir + "/library.safetensors"))
        let cli = try Checkpoint(path: dir + "/cli.safetensors"), library = try Checkpoint(path: dir + "/library.safetensors")
        #expect(cli.entries.count == library.entries.count)
        for entry in library.entries {
            let other = try #require(cli.entry(named: entry.name))
            #expect(Array(other.file.bytes(of: other.info)) == Array(entry.file.bytes(of: entry.info)), "\(line): \(entry.name)")
        }
    }
}

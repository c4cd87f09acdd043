import Foundation
import FuzzSupport
import MergeKit

/// libFuzzer target for the recipe reader (YAML and JSON recipes).
///
/// Every input is read with `Recipe.parse(_:path:)`. Besides "no crash, no hang, no sanitizer
/// report" (deep nesting and alias bombs must be refused, not followed), it checks properties
/// that must hold for every input, and traps when one fails so libFuzzer records it:
///
/// - a rejection names the file it was given;
/// - an accepted recipe, rebuilt from its values (as `merge-cli sweep` builds its recipe) and
///   written out as YAML, parses back to the same method, base, inputs, parameters and sweep.
///
/// Built with `-sanitize=fuzzer -D FUZZING` (see `Fuzz/run.sh`), `main` hands over to libFuzzer; in
/// a normal build it runs the same checks on the files named as arguments (see `FuzzDriver`).
enum RecipeFuzz {
    static let fileName = "fuzz-recipe.yml"

    static func check(_ bytes: UnsafeRawBufferPointer) {
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        let recipe: Recipe
        do throws(MergeKitError) {
            recipe = try Recipe.parse(text, path: fileName)
        } catch {
            guard error.description.contains(fileName) else { fatalError("a rejection does not name the file: \(error)") }
            return
        }
        let rebuilt = Recipe(method: recipe.method, baseModel: recipe.baseModel, inputs: recipe.inputs,
                             parameters: recipe.parameters, sweep: recipe.sweep, path: fileName)
        let again: Recipe
        do throws(MergeKitError) {
            again = try Recipe.parse(rebuilt.text, path: fileName)
        } catch {
            fatalError("a recipe written from accepted values does not parse: \(error)\n\(rebuilt.text)")
        }
        guard summary(again) == summary(recipe) else {
            fatalError("writing an accepted recipe out changed it:\n\(summary(recipe))\n!=\n\(summary(again))\n\(rebuilt.text)")
        }
    }

    /// The recipe's values as text, every value with its kind (numbers in their round-trip form,
    /// so NaN compares equal, and 0 for either zero).
    static func summary(_ recipe: Recipe) -> String {
        func number(_ v: Double) -> String { v == 0 ? "0" : "\(v)" }
        func show(_ setting: ParameterSetting) -> String {
            switch setting {
            case .number(let v): return "n:" + number(v)
            case .bool(let b): return "b:\(b)"
            case .string(let s): return "s:" + String(reflecting: s)
            case .gradient(let values): return "g:" + values.map(number).joined(separator: ",")
            case .conditions(let conditions):
                return "c:[" + conditions.map { "\(String(reflecting: $0.filter))→\(show($0.value))" }.joined(separator: ",") + "]"
            }
        }
        func settings(_ settings: [String: ParameterSetting]) -> String {
            settings.sorted { $0.key < $1.key }.map { "\(String(reflecting: $0.key))=\(show($0.value))" }.joined(separator: ";")
        }
        var lines = ["method \(String(reflecting: recipe.method))", "base \(String(reflecting: recipe.baseModel))"]
        lines += recipe.inputs.map { "\($0.kind.rawValue) \(String(reflecting: $0.path)) \(settings($0.parameters))" }
        lines.append("parameters \(settings(recipe.parameters))")
        lines += recipe.sweep.map { "sweep \(String(reflecting: $0.name)) " + $0.values.map(show).joined(separator: ",") }
        return lines.joined(separator: "\n")
    }
}

#if FUZZING
/// The input callback. (Only in the fuzzing build: the test bundle links this target together
/// with header-fuzz, which defines the C symbol in every build.)
@_cdecl("LLVMFuzzerTestOneInput")
public func recipeFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    RecipeFuzz.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif

/// Runs libFuzzer (`-D FUZZING`) or replays the files named on the command line (see FuzzDriver).
@main
struct RecipeFuzzMain {
    static func main() {
        #if FUZZING
        FuzzDriver.main(name: "recipe-fuzz", check: RecipeFuzz.check, callback: recipeFuzzTestOneInput)
        #else
        FuzzDriver.main(name: "recipe-fuzz", check: RecipeFuzz.check, callback: nil)
        #endif
    }
}

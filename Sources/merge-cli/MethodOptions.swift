import ArgumentParser
import MergeKit

/// A method's command-line options, declared at run time from its description.
///
/// ArgumentParser finds a type's options by reflecting a default instance (`Mirror`) and reads
/// the parsed values back through `Decodable`. This type reflects as one `@Option` (or `@Flag`)
/// per command-line parameter of the description (`customMirror`) and decodes them by the same
/// keys (`init(from:)`), so each method's options get ArgumentParser's own parsing, help lines,
/// "(values: …; default: …)" and error messages, exactly as if they were declared as properties.
/// Numbers and the seed are parsed with `.unconditional`, so that `--scale -0.5` is a value.
struct MethodOptions<Method: DescribedMethod>: ParsableArguments, CustomReflectable {
    /// The parsed values by recipe key: numbers, words and flags (the seed as a number too).
    private(set) var values: [String: ParameterSetting] = [:]
    /// The parsed --seed (0 when the method has none).
    private(set) var seed: UInt64 = 0

    init() {}

    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for parameter in Method.methodDescription.commandLineParameters {
            let key = Key(stringValue: parameter.key)
            switch parameter.type {
            case .number:
                values[parameter.key] = .number(try container.decode(Option<Double>.self, forKey: key).wrappedValue)
            case .seed:
                seed = try container.decode(Option<UInt64>.self, forKey: key).wrappedValue
                values[parameter.key] = .number(Double(seed))
            case .flag:
                values[parameter.key] = .bool(try container.decode(Flag<Bool>.self, forKey: key).wrappedValue)
            case .choice(let type):
                values[parameter.key] = .string(try Self.decodeChoice(type, container, key))
            }
        }
    }

    private static func decodeChoice<E: MethodChoice>(_ type: E.Type, _ container: KeyedDecodingContainer<Key>, _ key: Key) throws -> String {
        try container.decode(Option<ChoiceArgument<E>>.self, forKey: key).wrappedValue.rawValue
    }

    /// One property wrapper per command-line parameter, labelled as a declared `_key` would be.
    var customMirror: Mirror {
        let description = Method.methodDescription
        let children = description.commandLineParameters.map { parameter -> Mirror.Child in
            (label: "_" + parameter.key, value: Self.declaration(parameter, default: description.commandPreset.defaults[parameter.key]))
        }
        return Mirror(self, children: children, displayStyle: .struct)
    }

    /// The option (or flag) `parameter` would be declared as, with the subcommand's default.
    private static func declaration(_ parameter: MethodDescription.Parameter, default value: ParameterSetting?) -> Any {
        let name = NameSpecification.customLong(parameter.flag!)
        let help = ArgumentHelp(parameter.doc, valueName: parameter.valueName)
        switch (parameter.type, value) {
        case (.number, .number(let number)?):
            return Option<Double>(wrappedValue: number, name: name, parsing: .unconditional, help: help)
        case (.seed, .number(let number)?):
            return Option<UInt64>(wrappedValue: UInt64(number), name: name, parsing: .unconditional, help: help)
        case (.flag, .bool(let flag)?):
            return Flag<Bool>(wrappedValue: flag, name: name, inversion: .prefixedNo, help: help)
        case (.choice(let type), .string(let word)?):
            return choiceDeclaration(type, word, name: name, help: help)
        default:
            preconditionFailure("\(Method.methodDescription.info.name): --\(parameter.flag!) needs a default of its type in the first preset")
        }
    }

    private static func choiceDeclaration<E: MethodChoice>(_ type: E.Type, _ word: String, name: NameSpecification, help: ArgumentHelp) -> Any {
        Option<ChoiceArgument<E>>(wrappedValue: ChoiceArgument(rawValue: word)!, name: name, help: help)
    }
}

/// A method's word choice as a command-line value: its words are the choice's raw values, as for
/// an enum declared `ExpressibleByArgument`.
struct ChoiceArgument<Choice: MethodChoice>: ExpressibleByArgument, CaseIterable, RawRepresentable {
    let choice: Choice

    init?(rawValue: String) {
        guard let choice = Choice(rawValue: rawValue) else { return nil }
        self.choice = choice
    }

    var rawValue: String { choice.rawValue }

    static var allCases: [ChoiceArgument] { Choice.allCases.compactMap { ChoiceArgument(rawValue: $0.rawValue) } }
}

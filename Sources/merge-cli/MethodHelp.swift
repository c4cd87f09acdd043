import MergeKit

/// The help discussion of a method's subcommand: the description's own text, then, for a method
/// with several presets, which preset applies where and how to get the others here.
enum MethodHelp {
    static func discussion(_ description: MethodDescription) -> String {
        let presets = presetParagraph(description)
        return [description.help.discussion, presets].filter { !$0.isEmpty }.joined(separator: "\n")
    }

    /// "This command follows the paper preset. A recipe … follows the preset its method name
    /// selects: ties selects mergekit (--density 1 --trim-scope tensor …; normalize: true; …)."
    static func presetParagraph(_ description: MethodDescription) -> String {
        let command = description.commandPreset
        let others = description.recipeNames.filter { $0.preset != command.name }
        guard !others.isEmpty else { return "" }
        let sameNames = description.recipeNames.filter { $0.preset == command.name }.map(\.name)
        let selections = others.compactMap { entry in
            description.preset(named: entry.preset).map { "\(entry.name) selects \($0.name) (" + differences($0, from: command, in: description) + ")" }
        }
        return "Presets: this command follows the \(command.name) preset"
            + (sameNames.isEmpty ? "" : ", as the recipe name \(sameNames.joined(separator: " and ")) does")
            + ". A recipe (`merge-cli run`) or a sweep (`merge-cli sweep --method NAME`) follows the preset its method name "
            + "selects, so that mergekit configs port unchanged: " + selections.joined(separator: "; ")
            + ". To follow such a preset here, pass its flags."
    }

    /// Where `preset` differs from `command`: the flags, then the recipe-only values, then the note.
    static func differences(_ preset: MethodDescription.Preset, from command: MethodDescription.Preset,
                            in description: MethodDescription) -> String {
        var flags: [String] = [], keys: [String] = []
        for parameter in description.parameters {
            guard let value = preset.fixed[parameter.key] ?? preset.defaults[parameter.key],
                  value != command.defaults[parameter.key] else { continue }
            if let flag = parameter.flag, case .bool(let on) = value {
                flags.append(on ? "--\(flag)" : "--no-\(flag)")  // a flag pair, not an option with a value
            } else if let flag = parameter.flag {
                flags.append("--\(flag) \(value)")
            } else {
                keys.append("\(parameter.key): \(value)")
            }
        }
        var note = ""
        if preset.normalizeSelectsMerge && !command.normalizeSelectsMerge, case .string(let merge)? = preset.defaults["merge"] {
            note = merge == "normalized" ? "normalize: false selects merge sum" : "normalize: true selects merge normalized"
        }
        let parts = [flags.joined(separator: " "), keys.joined(separator: ", "), note]
        return parts.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// For the sweep's help: each recipe name whose preset is not its subcommand's, and how to
    /// get the subcommand's semantics in a sweep (another name, or the values as --param).
    static var recipePresets: String {
        MethodRegistry.descriptions.flatMap { description -> [String] in
            let command = description.commandPreset
            let same = description.recipeNames.first { $0.preset == command.name }
            return description.recipeNames.filter { $0.preset != command.name }.compactMap { entry in
                guard let preset = description.preset(named: entry.preset) else { return nil }
                let instead = same.map { "--method \($0.name)" } ?? description.parameters.compactMap { parameter in
                    let value = command.defaults[parameter.key]
                    return value != nil && value != (preset.fixed[parameter.key] ?? preset.defaults[parameter.key])
                        ? "--param \(parameter.key)=\(value!)" : nil
                }.joined(separator: " ")
                return "`--method \(entry.name)` follows \(preset.name), while `merge-cli \(description.info.name)` follows \(command.name) "
                    + "(here: \(instead))"
            }
        }.joined(separator: "; ")
    }
}

/// The chat template a recipe's `chat_template:` gives the output:
///
/// - `auto`: the template most of the models carry (the base first, then the models in the
///   recipe's order; a tie goes to the first), read from `chat_template.jinja`, else from
///   tokenizer_config.json's `chat_template` (the `default` one of a list of named templates), with
///   surrounding whitespace trimmed; none when no model has one (the output keeps the base's);
/// - a name: a template of the conversation format it names (`named`);
/// - otherwise the template's Jinja text itself (it must contain `{` and be at least 20
///   characters long, as mergekit requires).
enum ChatTemplates {
    /// Templates written for MergeKit, one per format mergekit names, rendering that format's
    /// conversation: `<|im_start|>role\n…<|im_end|>\n` (ChatML), Llama 3's headers and
    /// `<|eot_id|>` after each trimmed message (without a newline between messages), Alpaca's
    /// `### Instruction:` and `### Response:` sections after the last system message, Mistral's
    /// `[INST] … [/INST]` turns (the system message before the first user message; roles must
    /// alternate), EXAONE's `[|role|]` turns.
    static let named: [(name: String, template: String)] = [
        ("chatml", "{% for m in messages %}{{ '<|im_start|>' ~ m['role'] ~ '\\n' ~ m['content'] ~ '<|im_end|>\\n' }}{% endfor %}"
            + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
        ("llama3", "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
            + "{{ '<|start_header_id|>' ~ m['role'] ~ '<|end_header_id|>\\n\\n' ~ (m['content'] | trim) ~ '<|eot_id|>' }}{% endfor %}"
            + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
        ("alpaca", "{% set systems = messages | selectattr('role', 'equalto', 'system') | list %}"
            + "{% set turns = messages | rejectattr('role', 'equalto', 'system') | list %}"
            + "{% if systems %}{{ systems[-1]['content'] | trim }}{% if turns %}{{ '\\n\\n' }}{% endif %}{% endif %}"
            + "{% for m in turns %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
            + "{% if m['role'] == 'user' %}{{ '### Instruction:\\n' ~ (m['content'] | trim) }}"
            + "{% elif m['role'] == 'assistant' %}{{ '### Response:\\n' ~ (m['content'] | trim) }}"
            + "{% elif m['role'] == 'user_context' %}{{ '### Input:\\n' ~ (m['content'] | trim) }}{% endif %}{% endfor %}"
            + "{% if add_generation_prompt and (not turns or turns[-1]['role'] != 'assistant') %}"
            + "{% if systems or turns %}{{ '\\n\\n' }}{% endif %}{{ '### Response:\\n' }}{% endif %}"),
        ("mistral", "{% if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
            + "{% set turns = messages[1:] %}{% else %}{% set system = none %}{% set turns = messages %}{% endif %}{{ bos_token }}"
            + "{% for m in turns %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('After an optional system message, the roles must alternate user, assistant, user, ...') }}{% endif %}"
            + "{% if m['role'] == 'user' %}{% if loop.first and system is not none %}{{ ' [INST] ' ~ system ~ '\\n\\n' ~ m['content'] ~ ' [/INST]' }}"
            + "{% else %}{{ ' [INST] ' ~ m['content'] ~ ' [/INST]' }}{% endif %}"
            + "{% elif m['role'] == 'assistant' %}{{ ' ' ~ m['content'] ~ eos_token }}"
            + "{% else %}{{ raise_exception('Only user and assistant roles, after an optional system message') }}{% endif %}{% endfor %}"),
        ("exaone", "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '[|system|][|endofturn|]\\n' }}{% endif %}"
            + "{{ '[|' ~ m['role'] ~ '|]' ~ m['content'] }}{% if m['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}"
            + "{% endfor %}{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"),
    ]

    static var names: [String] { named.map(\.name) }

    /// The template `requested` stands for (nil: `auto` found none among `models`).
    static func resolve(_ requested: String, models: [Checkpoint]) throws(MergeKitError) -> String? {
        if requested == "auto" {
            var counts: [String: Int] = [:], order: [String] = []
            for model in models {
                guard let template = try carried(by: model) else { continue }
                if counts[template] == nil { order.append(template) }
                counts[template, default: 0] += 1
            }
            var best: String?
            for template in order where best == nil || counts[template]! > counts[best!]! { best = template }
            return best
        }
        if let template = named.first(where: { $0.name == requested })?.template { return template }
        guard requested.contains("{"), requested.count >= 20 else {
            throw MergeKitError(.invalidArgument, "chat_template \"\(requested)\" is neither auto, a template's name nor a Jinja template",
                                fix: "Give auto, one of \(names.joined(separator: ", ")), or the template's text")
        }
        return requested
    }

    /// The chat template `model` carries (trimmed), if any.
    static func carried(by model: Checkpoint) throws(MergeKitError) -> String? {
        if let bytes = try model.companionBytes("chat_template.jinja") {
            let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace
            return text.isEmpty ? nil : text
        }
        guard let bytes = try model.companionBytes("tokenizer_config.json"), let config = try? JSONParser.parse(bytes) else { return nil }
        switch config["chat_template"] {
        case .string(let text)?:
            return text.trimmingWhitespace.isEmpty ? nil : text.trimmingWhitespace
        case .array(let templates)?:
            return templates.first { $0["name"]?.stringValue == "default" }?["template"]?.stringValue?.trimmingWhitespace
        default:
            return nil
        }
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks (Python's `strip()`).
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}

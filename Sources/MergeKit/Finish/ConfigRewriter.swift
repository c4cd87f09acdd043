/// Keeps a copied `config.json` truthful: its dtype when the output dtype changes, and the layer
/// counts and per-layer lists of a layer-wise recipe's output (`Edit`s planned by the recipe).
enum ConfigRewriter {
    static let torchNames: [DType: String] = [.F32: "float32", .F16: "float16", .BF16: "bfloat16", .F64: "float64"]

    /// One value to set: a key path into nested objects (`["text_config", "num_hidden_layers"]`)
    /// and the value.
    struct Edit: Sendable, Equatable {
        let path: [String]
        let value: JSONValue
    }

    /// Whether `bytes` parse as a JSON object (a config that `settingDType` can update).
    static func isJSONObject(_ bytes: [UInt8]) -> Bool {
        if let json = try? JSONParser.parse(bytes), case .object = json { return true }
        return false
    }

    /// `bytes` with `torch_dtype` (and the newer `dtype`) set to `dtype`'s torch name; unchanged
    /// when `dtype` is nil, the file is not a JSON object, or it has neither key.
    static func settingDType(_ dtype: DType?, in bytes: [UInt8]) -> [UInt8] {
        guard let dtype, let name = torchNames[dtype] else { return bytes }
        return rewriting(bytes) { members in
            var changed = false
            for i in members.indices where ["torch_dtype", "dtype"].contains(members[i].key) {
                if case .string(let old) = members[i].value, old != name {
                    members[i].value = .string(name)
                    changed = true
                }
            }
            return changed
        }
    }

    /// `bytes` with each edit's key set to its value, where every object on its path exists (a
    /// key is replaced in place, or added at the end of its object); unchanged when there is
    /// nothing to change or the file is not a JSON object.
    static func setting(_ edits: [Edit], in bytes: [UInt8]) -> [UInt8] {
        guard !edits.isEmpty else { return bytes }
        return rewriting(bytes) { members in
            edits.reduce(false) { changed, edit in set(edit.path[...], to: edit.value, in: &members) || changed }
        }
    }

    private static func set(_ path: ArraySlice<String>, to value: JSONValue, in members: inout [JSONMember]) -> Bool {
        guard let key = path.first else { return false }
        let index = members.firstIndex { $0.key == key }
        if path.count == 1 {
            if let index {
                guard members[index].value != value else { return false }
                members[index].value = value
            } else {
                members.append(JSONMember(key, value))
            }
            return true
        }
        guard let index, case .object(var inner) = members[index].value else { return false }
        let changed = set(path.dropFirst(), to: value, in: &inner)
        members[index].value = .object(inner)
        return changed
    }

    /// `bytes` parsed, changed by `change` (which says whether it changed anything) and written
    /// back with two-space indentation; unchanged bytes when nothing changed or they are not a
    /// JSON object.
    private static func rewriting(_ bytes: [UInt8], _ change: (inout [JSONMember]) -> Bool) -> [UInt8] {
        guard let json = try? JSONParser.parse(bytes), case .object(var members) = json, change(&members) else { return bytes }
        return Array((JSONValue.object(members).serialized(indent: 2) + "\n").utf8)
    }
}

extension MergePlan {
    /// The base's config.json `bytes` as this plan writes it: the output dtype, then the plan's
    /// edits (layer counts, the vocabulary size).
    func rewrittenConfig(_ bytes: [UInt8]) -> [UInt8] {
        ConfigRewriter.setting(configEdits, in: ConfigRewriter.settingDType(output.dtype, in: bytes))
    }
}

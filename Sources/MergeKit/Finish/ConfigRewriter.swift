/// Keeps a copied `config.json` truthful when the output dtype changes.
enum ConfigRewriter {
    static let torchNames: [DType: String] = [.F32: "float32", .F16: "float16", .BF16: "bfloat16", .F64: "float64"]

    /// Whether `bytes` parse as a JSON object (a config that `settingDType` can update).
    static func isJSONObject(_ bytes: [UInt8]) -> Bool {
        if let json = try? JSONParser.parse(bytes), case .object = json { return true }
        return false
    }

    /// `bytes` with `torch_dtype` (and the newer `dtype`) set to `dtype`'s torch name; unchanged
    /// when `dtype` is nil, the file is not a JSON object, or it has neither key.
    static func settingDType(_ dtype: DType?, in bytes: [UInt8]) -> [UInt8] {
        guard let dtype, let name = torchNames[dtype],
              let json = try? JSONParser.parse(bytes), case .object(var members) = json else { return bytes }
        var changed = false
        for i in members.indices where ["torch_dtype", "dtype"].contains(members[i].key) {
            if case .string(let old) = members[i].value, old != name {
                members[i].value = .string(name)
                changed = true
            }
        }
        return changed ? Array((JSONValue.object(members).serialized(indent: 2) + "\n").utf8) : bytes
    }
}

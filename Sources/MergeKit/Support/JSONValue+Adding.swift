extension JSONValue {
    /// This object with `key` set to `value` (replacing an existing member).
    public func adding(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members.removeAll { $0.key == key }
        members.append(JSONMember(key, value))
        return .object(members)
    }
}

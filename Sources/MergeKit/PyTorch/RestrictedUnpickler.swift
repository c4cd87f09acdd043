/// Reads a pickle (the `data.pkl` of a `torch.save` archive) without running any of it.
///
/// A pickle is a program for a stack machine, and Python's unpickler runs whatever functions it
/// names. This one implements the machine from the pickle protocol's specification (protocols
/// 2–5: the binary opcodes `torch.save` emits, plus the simple text forms of integers, floats and
/// memo indices) but calls nothing: GLOBAL may only name what a tensor state dict holds
/// (`PickleGlobal.allowed`: the tensor and parameter rebuild functions, the storage classes and
/// dtypes, `OrderedDict`, and a few value types), and every other name — `os.system`,
/// `builtins.eval`, any class — is refused by name at the opcode that names it. REDUCE applies one
/// of those allowed callables to arguments it checks (`reduce`); REDUCE on anything else, and the
/// opcodes that only build arbitrary objects (NEWOBJ, NEWOBJ_EX, INST, OBJ, the extension
/// registry, out-of-band buffers), are refused too. A persistent id must be a storage reference
/// (`('storage', type, key, location, numel)`).
///
/// Everything is bounded before it is allocated: a length is checked against the bytes left, the
/// stack holds at most `maximumStack` values, marks nest at most `maximumMarks` deep, a container
/// at most `maximumDepth` deep, and a memo index may only name the next free slot or an existing
/// one (picklers number them in order), so a huge index cannot allocate a huge memo. Objects live
/// in an arena (`PickleArena`), so hostile nesting or self-reference cannot recurse or leak.
///
/// Errors name the file, the record, the byte offset and the opcode, and say what to do.
struct RestrictedUnpickler {
    static let maximumStack = 1 << 20
    static let maximumMarks = 1000
    static let maximumDepth = 1000
    static let maximumMemo = 1 << 24
    /// More dimensions than any tensor has.
    static let maximumDimensions = 64

    let file: String
    /// The record's name inside the archive (for messages).
    let record: String

    private(set) var arena = PickleArena()
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [PickleValue] = []
    /// Storages by key, so tensors naming one key share it.
    private var storages: [String: Int] = [:]
    private var position = 0
    private var opcodeStart = 0
    private var opcode: UInt8 = 0

    init(file: String, record: String) {
        self.file = file
        self.record = record
    }

    // MARK: Errors

    private static let opcodeNames: [UInt8: String] = [
        0x80: "PROTO", 0x95: "FRAME", 0x2e: "STOP", 0x28: "MARK", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP",
        0x4a: "BININT", 0x4b: "BININT1", 0x4d: "BININT2", 0x8a: "LONG1", 0x8b: "LONG4", 0x49: "INT", 0x4c: "LONG",
        0x47: "BINFLOAT", 0x46: "FLOAT", 0x4e: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE",
        0x58: "BINUNICODE", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x56: "UNICODE", 0x53: "STRING",
        0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8e: "BINBYTES8",
        0x96: "BYTEARRAY8", 0x29: "EMPTY_TUPLE", 0x74: "TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3",
        0x5d: "EMPTY_LIST", 0x6c: "LIST", 0x61: "APPEND", 0x65: "APPENDS", 0x7d: "EMPTY_DICT", 0x64: "DICT",
        0x73: "SETITEM", 0x75: "SETITEMS", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
        0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x94: "MEMOIZE", 0x67: "GET", 0x68: "BINGET", 0x6a: "LONG_BINGET",
        0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x62: "BUILD", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX",
        0x69: "INST", 0x6f: "OBJ", 0x50: "PERSID", 0x51: "BINPERSID", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
        0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    ]

    private var here: String {
        let digits = Array("0123456789abcdef")
        let name = Self.opcodeNames[opcode] ?? "0x\(digits[Int(opcode >> 4)])\(digits[Int(opcode & 0xF)])"
        return "\(record) byte \(opcodeStart), opcode \(name)"
    }

    private func invalid(_ detail: String) -> MergeKitError {
        MergeKitError(.pickleInvalid, file: file, "\(here): \(detail)",
            fix: "The pickle is corrupt or not one torch.save wrote; re-save the state dict with torch.save")
    }

    private func forbidden(_ detail: String) -> MergeKitError {
        MergeKitError(.pickleForbidden, file: file, "\(here): \(detail)",
            fix: "Only tensor state dicts are read (a pickle can run code, so nothing else is); if you trust the file, load it in Python and save its state dict alone: torch.save(model.state_dict(), PATH)")
    }

    private func tooLarge(_ detail: String) -> MergeKitError {
        MergeKitError(.pickleTooLarge, file: file, "\(here): \(detail)",
            fix: "This is not a state dict torch.save wrote; re-save the state dict with torch.save")
    }

    // MARK: Reading bytes

    private mutating func take(_ count: Int, from bytes: UnsafeRawBufferPointer) throws(MergeKitError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else {
            throw invalid("needs \(count) bytes but only \(bytes.count - position) remain (the pickle is truncated)")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    private mutating func unsigned(_ count: Int, from bytes: UnsafeRawBufferPointer) throws(MergeKitError) -> UInt64 {
        let raw = try take(count, from: bytes)
        var value: UInt64 = 0
        for (i, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        return value
    }

    /// A length read as `count` little-endian bytes, checked against the bytes left.
    private mutating func length(_ count: Int, from bytes: UnsafeRawBufferPointer) throws(MergeKitError) -> Int {
        let n = try unsigned(count, from: bytes)
        guard n <= UInt64(bytes.count - position) else {
            throw invalid("declares \(n) bytes but only \(bytes.count - position) remain (the pickle is truncated)")
        }
        return Int(n)
    }

    /// A text line (without its newline), at most 256 bytes.
    private mutating func line(from bytes: UnsafeRawBufferPointer) throws(MergeKitError) -> String {
        var end = position
        while end < bytes.count && bytes[end] != 0x0a {
            end += 1
            guard end - position <= 256 else { throw invalid("has a text argument longer than 256 bytes") }
        }
        guard end < bytes.count else { throw invalid("has an unterminated text argument (the pickle is truncated)") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
        position = end + 1
        return text
    }

    private func string(_ raw: UnsafeRawBufferPointer) throws(MergeKitError) -> String {
        guard let s = String(validating: raw, as: UTF8.self) else { throw invalid("holds a string that is not valid UTF-8") }
        return s
    }

    // MARK: The stack

    private mutating func push(_ value: PickleValue) throws(MergeKitError) {
        guard stack.count < Self.maximumStack else {
            throw tooLarge("the stack would exceed \(Self.maximumStack) values")
        }
        stack.append(value)
    }

    private mutating func pop() throws(MergeKitError) -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (marks.last ?? 0) else {
            throw invalid("pops a value from an empty stack")
        }
        return value
    }

    private func top() throws(MergeKitError) -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw invalid("needs a value but the stack is empty") }
        return value
    }

    /// The values above the last mark, which is removed.
    private mutating func popMark() throws(MergeKitError) -> [PickleValue] {
        guard let mark = marks.popLast() else { throw invalid("needs a MARK but there is none") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func make(_ object: PickleObject, children: [PickleValue]) throws(MergeKitError) -> PickleValue {
        let depth = 1 + children.reduce(0) { max($0, arena.depth(of: $1)) }
        guard depth <= Self.maximumDepth else { throw tooLarge("nests containers deeper than \(Self.maximumDepth) levels") }
        return arena.add(object, depth: depth)
    }

    /// Records that `children` were put into the object at `index`, whose depth grows with them.
    private mutating func deepen(_ index: Int, by children: [PickleValue]) throws(MergeKitError) {
        let depth = 1 + children.reduce(0) { max($0, arena.depth(of: $1)) }
        guard depth <= Self.maximumDepth else { throw tooLarge("nests containers deeper than \(Self.maximumDepth) levels") }
        arena.depths[index] = max(arena.depths[index], depth)
    }

    private mutating func memoize(_ index: Int, _ value: PickleValue) throws(MergeKitError) {
        if index < memo.count {
            memo[index] = value
        } else if index == memo.count && index < Self.maximumMemo {
            memo.append(value)
        } else {
            throw tooLarge("stores memo entry \(index) but only \(memo.count) exist (picklers number entries in order; the limit is \(Self.maximumMemo))")
        }
    }

    private func recall(_ index: Int) throws(MergeKitError) -> PickleValue {
        guard index >= 0 && index < memo.count else { throw invalid("reads memo entry \(index), which was never stored") }
        return memo[index]
    }

    // MARK: The machine

    /// Runs the pickle in `bytes` to its STOP and returns the value it built (its objects are in
    /// `arena`).
    mutating func load(_ bytes: UnsafeRawBufferPointer) throws(MergeKitError) -> PickleValue {
        position = 0
        while true {
            opcodeStart = position
            guard position < bytes.count else {
                opcode = 0
                throw invalid("ends before its STOP opcode (the pickle is truncated)")
            }
            opcode = bytes[position]
            position += 1
            switch opcode {
            case 0x80:  // PROTO
                let version = try unsigned(1, from: bytes)
                guard version <= 5 else { throw invalid("uses pickle protocol \(version); protocols up to 5 are read") }
            case 0x95:  // FRAME: a length hint only
                _ = try length(8, from: bytes)
            case 0x2e:  // STOP
                let result = try pop()
                return result
            case 0x28:  // MARK
                guard marks.count < Self.maximumMarks else { throw tooLarge("nests MARKs deeper than \(Self.maximumMarks) levels") }
                marks.append(stack.count)
            case 0x30:  // POP
                _ = try pop()
            case 0x31:  // POP_MARK
                _ = try popMark()
            case 0x32:  // DUP
                try push(try top())

            case 0x4a:  // BININT
                try push(.int(Int(Int32(bitPattern: UInt32(try unsigned(4, from: bytes))))))
            case 0x4b:  // BININT1
                try push(.int(Int(try unsigned(1, from: bytes))))
            case 0x4d:  // BININT2
                try push(.int(Int(try unsigned(2, from: bytes))))
            case 0x8a:  // LONG1
                let n = try length(1, from: bytes)
                try push(Self.long(try take(n, from: bytes)))
            case 0x8b:  // LONG4
                let n = try length(4, from: bytes)
                try push(Self.long(try take(n, from: bytes)))
            case 0x49:  // INT (text; "00" and "01" are False and True)
                let text = try line(from: bytes)
                if text == "00" { try push(.bool(false)) } else if text == "01" { try push(.bool(true)) } else {
                    guard let value = Int(text) else { throw invalid("holds \"\(text)\", not an integer") }
                    try push(.int(value))
                }
            case 0x4c:  // LONG (text)
                var text = try line(from: bytes)
                if text.hasSuffix("L") { text.removeLast() }
                guard let value = Int(text) else {
                    guard !text.isEmpty, text.drop(while: { $0 == "-" }).allSatisfy(\.isNumber) else { throw invalid("holds \"\(text)\", not an integer") }
                    try push(.bigInt)
                    continue
                }
                try push(.int(value))
            case 0x47:  // BINFLOAT (big-endian)
                let raw = try take(8, from: bytes)
                var bits: UInt64 = 0
                for byte in raw { bits = bits << 8 | UInt64(byte) }
                try push(.float(Double(bitPattern: bits)))
            case 0x46:  // FLOAT (text)
                let text = try line(from: bytes)
                guard let value = Double(text) else { throw invalid("holds \"\(text)\", not a float") }
                try push(.float(value))
            case 0x4e: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))

            case 0x58:  // BINUNICODE
                let n = try length(4, from: bytes)
                try push(.string(try string(try take(n, from: bytes))))
            case 0x8c:  // SHORT_BINUNICODE
                let n = try length(1, from: bytes)
                try push(.string(try string(try take(n, from: bytes))))
            case 0x8d:  // BINUNICODE8
                let n = try length(8, from: bytes)
                try push(.string(try string(try take(n, from: bytes))))
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str): text when UTF-8, else bytes
                let n = try length(opcode == 0x54 ? 4 : 1, from: bytes)
                let raw = try take(n, from: bytes)
                try push(String(validating: raw, as: UTF8.self).map { .string($0) } ?? .bytes(Array(raw)))
            case 0x42, 0x43, 0x8e, 0x96:  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                let n = try length(opcode == 0x43 ? 1 : opcode == 0x42 ? 4 : 8, from: bytes)
                try push(.bytes(Array(try take(n, from: bytes))))

            case 0x29:  // EMPTY_TUPLE
                try push(try make(.tuple([]), children: []))
            case 0x74:  // TUPLE
                let items = try popMark()
                try push(try make(.tuple(items), children: items))
            case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                let n = Int(opcode - 0x84)
                var items: [PickleValue] = []
                for _ in 0..<n { items.insert(try pop(), at: 0) }
                try push(try make(.tuple(items), children: items))
            case 0x5d:  // EMPTY_LIST
                try push(try make(.list([]), children: []))
            case 0x6c:  // LIST
                let items = try popMark()
                try push(try make(.list(items), children: items))
            case 0x61:  // APPEND
                let item = try pop()
                try append([item])
            case 0x65:  // APPENDS
                let items = try popMark()
                try append(items)
            case 0x7d:  // EMPTY_DICT
                try push(try make(.dict(PickleDictionary()), children: []))
            case 0x64:  // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw invalid("has an odd number of keys and values") }
                var dictionary = PickleDictionary()
                for i in stride(from: 0, to: items.count, by: 2) { dictionary.set(items[i], items[i + 1]) }
                try push(try make(.dict(dictionary), children: items))
            case 0x73:  // SETITEM
                let value = try pop()
                let key = try pop()
                try setItems([key, value])
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw invalid("has an odd number of keys and values") }
                try setItems(items)
            case 0x8f:  // EMPTY_SET
                try push(try make(.set([]), children: []))
            case 0x90:  // ADDITEMS
                let items = try popMark()
                guard case .object(let index) = try top(), case .set(var members) = arena.objects[index] else {
                    throw invalid("adds items to \(try top().kindName(in: arena)), not a set")
                }
                try deepen(index, by: items)
                arena.objects[index] = .tuple([])
                members.append(contentsOf: items)
                arena.objects[index] = .set(members)
            case 0x91:  // FROZENSET
                let items = try popMark()
                try push(try make(.set(items), children: items))

            case 0x70:  // PUT (text)
                let text = try line(from: bytes)
                guard let index = Int(text), index >= 0 else { throw invalid("holds \"\(text)\", not a memo index") }
                try memoize(index, try top())
            case 0x71:  // BINPUT
                try memoize(Int(try unsigned(1, from: bytes)), try top())
            case 0x72:  // LONG_BINPUT
                try memoize(Int(try unsigned(4, from: bytes)), try top())
            case 0x94:  // MEMOIZE
                try memoize(memo.count, try top())
            case 0x67:  // GET (text)
                let text = try line(from: bytes)
                guard let index = Int(text) else { throw invalid("holds \"\(text)\", not a memo index") }
                try push(try recall(index))
            case 0x68:  // BINGET
                try push(try recall(Int(try unsigned(1, from: bytes))))
            case 0x6a:  // LONG_BINGET
                try push(try recall(Int(try unsigned(4, from: bytes))))

            case 0x63:  // GLOBAL
                let module = try line(from: bytes)
                let name = try line(from: bytes)
                try push(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw invalid("needs a module and a name as strings")
                }
                try push(try global(m, n))
            case 0x52:  // REDUCE
                let arguments = try pop()
                let callable = try pop()
                try push(try reduce(callable, arguments))
            case 0x62:  // BUILD
                let state = try pop()
                try build(try top(), state: state)
            case 0x51:  // BINPERSID
                let id = try pop()
                try push(try persistentLoad(id))
            case 0x81, 0x92:  // NEWOBJ, NEWOBJ_EX
                _ = try pop()
                if opcode == 0x92 { _ = try pop() }
                let cls = try pop()
                throw forbidden("would create an instance of \(cls.kindName(in: arena)); a state dict holds no objects but tensors")
            case 0x69, 0x6f:  // INST, OBJ
                throw forbidden("would create an instance of a class; a state dict holds no objects but tensors")
            case 0x82, 0x83, 0x84:  // EXT1, EXT2, EXT4
                throw forbidden("names an object through the copyreg extension registry, which is refused")
            case 0x97, 0x98:  // NEXT_BUFFER, READONLY_BUFFER
                throw forbidden("uses an out-of-band buffer, which torch.save never writes")
            case 0x50, 0x53, 0x56:  // PERSID, STRING, UNICODE (text forms torch.save never writes)
                throw invalid("uses a text-protocol opcode torch.save never writes; re-save the file with torch.save")
            default:
                throw invalid("is not a pickle opcode")
            }
        }
    }

    private static func long(_ raw: UnsafeRawBufferPointer) -> PickleValue {
        guard !raw.isEmpty else { return .int(0) }
        let negative = raw[raw.count - 1] & 0x80 != 0
        // Beyond 8 bytes, the value fits only when the extra bytes merely extend the sign.
        if raw.count > 8 {
            let fill: UInt8 = negative ? 0xFF : 0
            guard raw[8...].allSatisfy({ $0 == fill }), (raw[7] & 0x80 != 0) == negative else { return .bigInt }
        }
        var value: UInt64 = negative ? .max : 0
        for i in 0..<min(8, raw.count) {
            value &= ~(0xFF << (8 * UInt64(i)))
            value |= UInt64(raw[i]) << (8 * UInt64(i))
        }
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func append(_ items: [PickleValue]) throws(MergeKitError) {
        guard case .object(let index) = try top(), case .list(var list) = arena.objects[index] else {
            throw invalid("appends to \(try top().kindName(in: arena)), not a list")
        }
        try deepen(index, by: items)
        arena.objects[index] = .tuple([])  // release the array while it grows (no copy)
        list.append(contentsOf: items)
        arena.objects[index] = .list(list)
    }

    private mutating func setItems(_ items: [PickleValue]) throws(MergeKitError) {
        guard case .object(let index) = try top(), case .dict(var dictionary) = arena.objects[index] else {
            throw invalid("sets items on \(try top().kindName(in: arena)), not a dict")
        }
        try deepen(index, by: items)
        arena.objects[index] = .tuple([])
        for i in stride(from: 0, to: items.count, by: 2) { dictionary.set(items[i], items[i + 1]) }
        arena.objects[index] = .dict(dictionary)
    }

    private mutating func global(_ module: String, _ name: String) throws(MergeKitError) -> PickleValue {
        guard let allowed = PickleGlobal.allowed[module + " " + name] else {
            throw forbidden("names the global \(module).\(name), which a tensor state dict never holds (a pickle naming a function can make the loader run it)")
        }
        return try make(.global(allowed, name: module + "." + name), children: [])
    }

    // MARK: REDUCE, BUILD and storages

    private func items(of value: PickleValue) -> [PickleValue]? {
        guard case .object(let index) = value else { return nil }
        switch arena.objects[index] {
        case .tuple(let items), .list(let items): return items
        default: return nil
        }
    }

    private func integer(_ value: PickleValue, _ what: String) throws(MergeKitError) -> Int {
        guard case .int(let n) = value, n >= 0 else {
            throw forbidden("gives \(what) as \(value.kindName(in: arena)), not a non-negative integer")
        }
        return n
    }

    private func dimensions(_ value: PickleValue, _ what: String) throws(MergeKitError) -> [Int] {
        guard let items = items(of: value) else { throw forbidden("gives the \(what) as \(value.kindName(in: arena)), not a tuple") }
        guard items.count <= Self.maximumDimensions else {
            throw tooLarge("gives a \(what) of \(items.count) dimensions (at most \(Self.maximumDimensions))")
        }
        var dims: [Int] = []
        for item in items { dims.append(try integer(item, "a \(what) entry")) }
        return dims
    }

    private mutating func reduce(_ callable: PickleValue, _ arguments: PickleValue) throws(MergeKitError) -> PickleValue {
        guard case .object(let index) = callable, case .global(let global, let name) = arena.objects[index] else {
            throw forbidden("calls \(callable.kindName(in: arena)); only the rebuild functions and types of a state dict may be called")
        }
        guard let args = items(of: arguments), case .object(let argumentIndex) = arguments,
              case .tuple = arena.objects[argumentIndex] else {
            throw forbidden("calls \(name) with \(arguments.kindName(in: arena)) instead of an argument tuple")
        }
        func count(_ allowed: ClosedRange<Int>) throws(MergeKitError) {
            guard allowed.contains(args.count) else {
                throw forbidden("calls \(name) with \(args.count) arguments (it takes \(allowed.lowerBound == allowed.upperBound ? "\(allowed.lowerBound)" : "\(allowed.lowerBound) to \(allowed.upperBound)"))")
            }
        }
        switch global {
        case .orderedDict:
            try count(0...1)
            var dictionary = PickleDictionary()
            if let pairs = args.first {
                guard let list = items(of: pairs) else { throw forbidden("builds an OrderedDict from \(pairs.kindName(in: arena))") }
                for pair in list {
                    guard let kv = items(of: pair), kv.count == 2 else { throw forbidden("builds an OrderedDict from an item that is not a pair") }
                    dictionary.set(kv[0], kv[1])
                }
                return try make(.dict(dictionary), children: list)
            }
            return try make(.dict(dictionary), children: [])
        case .rebuildTensor(let version):
            try count(version == 1 ? 4...4 : version == 2 ? 6...7 : 7...8)
            return try rebuildTensor(args, version: version, name: name)
        case .rebuildParameter(let withState):
            try count(withState ? 4...4 : 3...3)
            guard case .object(let t) = args[0], case .tensor = arena.objects[t] else {
                throw forbidden("calls \(name) on \(args[0].kindName(in: arena)), not a tensor")
            }
            return args[0]
        case .rebuildFromType:
            try count(4...4)
            guard case .object(let f) = args[0], case .global(let inner, let innerName) = arena.objects[f] else {
                throw forbidden("calls \(name) with \(args[0].kindName(in: arena)) as its function")
            }
            guard case .object(let t) = args[1], case .global(let type, let typeName) = arena.objects[t],
                  type == .tensorType || type == .parameterType else {
                throw forbidden("calls \(name) to make \(args[1].kindName(in: arena)), not a Tensor or Parameter")
            }
            _ = typeName
            switch inner {
            case .rebuildTensor, .rebuildParameter: return try reduce(args[0], args[2])
            default: throw forbidden("calls \(name) with \(innerName) as its function, which is not a tensor rebuild function")
            }
        case .size:
            try count(1...1)
            _ = try dimensions(args[0], "size")
            return args[0]
        case .device:
            try count(1...2)
            guard case .string = args[0] else { throw forbidden("calls \(name) with \(args[0].kindName(in: arena))") }
            return try make(.opaque("a torch.device"), children: [])
        case .encode:
            try count(1...2)
            guard case .string(let text) = args[0] else { throw forbidden("calls \(name) on \(args[0].kindName(in: arena)), not a string") }
            if args.count == 2 {
                guard case .string(let encoding) = args[1], ["latin1", "latin-1"].contains(encoding.lowercased()) else {
                    throw forbidden("calls \(name) with an encoding other than latin1")
                }
            }
            var out: [UInt8] = []
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { throw forbidden("calls \(name) on text that latin1 cannot encode") }
                out.append(UInt8(scalar.value))
            }
            return .bytes(out)
        case .set:
            try count(0...1)
            let members = try args.first.map { (value) throws(MergeKitError) -> [PickleValue] in
                guard let list = items(of: value) else { throw forbidden("builds a set from \(value.kindName(in: arena))") }
                return list
            } ?? []
            return try make(.set(members), children: members)
        case .storageType, .untypedStorage, .dtype, .tensorType, .parameterType:
            throw forbidden("calls \(name), which a state dict never calls")
        }
    }

    private mutating func rebuildTensor(_ args: [PickleValue], version: Int, name: String) throws(MergeKitError) -> PickleValue {
        guard case .object(let s) = args[0], case .storage(let storage) = arena.objects[s] else {
            throw forbidden("calls \(name) on \(args[0].kindName(in: arena)), not a storage")
        }
        let offset = try integer(args[1], "the storage offset")
        let shape = try dimensions(args[2], "size")
        let stride = try dimensions(args[3], "stride")
        guard shape.count == stride.count else {
            throw forbidden("gives a size of \(shape.count) dimensions but a stride of \(stride.count)")
        }
        let dtype: DType
        if version == 3 {
            guard case .object(let d) = args[6], case .global(.dtype(let explicit), _) = arena.objects[d] else {
                throw forbidden("gives \(args[6].kindName(in: arena)) as the dtype")
            }
            dtype = explicit
        } else {
            guard let typed = storage.dtype else { throw forbidden("rebuilds a tensor on an untyped storage without a dtype") }
            dtype = typed
        }
        if version >= 2, case .bool = args[4] {} else if version >= 2 {
            throw forbidden("gives \(args[4].kindName(in: arena)) for requires_grad")
        }
        return try make(.tensor(PickleTensor(storage: s, dtype: dtype, offset: offset, shape: shape, stride: stride)), children: [])
    }

    private mutating func build(_ target: PickleValue, state: PickleValue) throws(MergeKitError) {
        // A state dict's `_metadata` (an OrderedDict attribute) and a tensor's Python attributes
        // are set with BUILD; neither matters here, so the state is dropped.
        guard case .object(let index) = target else { throw forbidden("sets the state of \(target.kindName(in: arena))") }
        switch arena.objects[index] {
        case .dict, .tensor: return
        default: throw forbidden("sets the state of \(arena.objects[index].kindName), which only objects of other classes have")
        }
    }

    private mutating func persistentLoad(_ id: PickleValue) throws(MergeKitError) -> PickleValue {
        guard let fields = items(of: id), fields.count == 5, case .string("storage") = fields[0] else {
            throw forbidden("gives a persistent id that is not ('storage', type, key, location, size)")
        }
        guard case .object(let t) = fields[1], case .global(let type, _) = arena.objects[t] else {
            throw forbidden("gives \(fields[1].kindName(in: arena)) as a storage type")
        }
        let dtype: DType?
        switch type {
        case .storageType(let typed): dtype = typed
        case .untypedStorage: dtype = nil
        default: throw forbidden("gives \(arena.objects[t].kindName) as a storage type")
        }
        guard case .string(let key) = fields[2], !key.isEmpty, !key.contains("/"), key.utf8.count <= 256 else {
            throw forbidden("gives \(fields[2].kindName(in: arena)) as a storage key, not a short name")
        }
        let numel = try integer(fields[4], "the storage size")
        let width = dtype?.byteWidth ?? 1
        let (byteCount, overflow) = numel.multipliedReportingOverflow(by: width)
        guard !overflow else { throw tooLarge("gives storage \(key) \(numel) elements, more bytes than a 64-bit count holds") }
        let storage = PickleStorage(key: key, dtype: dtype, byteCount: byteCount)
        if let existing = storages[key] {
            guard case .storage(let known) = arena.objects[existing], known.byteCount == byteCount else {
                throw forbidden("names storage \(key) twice with different sizes")
            }
            if known.dtype == dtype { return .object(existing) }
        }
        let value = try make(.storage(storage), children: [])
        if case .object(let index) = value, storages[key] == nil { storages[key] = index }
        return value
    }
}

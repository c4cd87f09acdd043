/// A value the restricted unpickler (`RestrictedUnpickler`) builds: a primitive held inline, or a
/// reference to an object in its arena (`PickleArena`).
///
/// Containers live in the arena and refer to one another by index, never by Swift ownership, so
/// a pickle that nests a million tuples or makes a list contain itself builds a flat array: no
/// deep recursion when it is freed, no reference cycle to leak.
enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer beyond 64 bits (kept as a placeholder: no tensor field can hold one).
    case bigInt
    case float(Double)
    case string(String)
    case bytes([UInt8])
    /// An object in the arena.
    case object(Int)

    /// What the value is, for messages ("a string", "a tuple").
    func kindName(in arena: PickleArena) -> String {
        switch self {
        case .none: return "None"
        case .bool: return "a bool"
        case .int, .bigInt: return "an integer"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .object(let index): return arena.objects[index].kindName
        }
    }
}

/// A callable or type a pickle may name with GLOBAL: only what `torch.save` writes for a tensor
/// state dict. Every other name is refused by `RestrictedUnpickler` before anything uses it.
enum PickleGlobal: Equatable {
    case orderedDict
    /// `torch._utils._rebuild_tensor` (v1), `_rebuild_tensor_v2`, `_rebuild_tensor_v3`.
    case rebuildTensor(version: Int)
    case rebuildParameter(withState: Bool)
    case rebuildFromType
    /// A typed storage class (`torch.FloatStorage`, …): the storage's element type.
    case storageType(DType)
    /// `torch.storage.UntypedStorage` (the element type then comes with the tensor).
    case untypedStorage
    /// A dtype (`torch.float32`, …).
    case dtype(DType)
    case tensorType, parameterType
    case size, device
    /// `_codecs.encode` (how protocol 2 writes `bytes`).
    case encode
    case set

    /// The names allowed, as `module name` (the text of a GLOBAL opcode).
    static let allowed: [String: PickleGlobal] = {
        var table: [String: PickleGlobal] = [
            "collections OrderedDict": .orderedDict,
            "torch._utils _rebuild_tensor": .rebuildTensor(version: 1),
            "torch._utils _rebuild_tensor_v2": .rebuildTensor(version: 2),
            "torch._utils _rebuild_tensor_v3": .rebuildTensor(version: 3),
            "torch._utils _rebuild_parameter": .rebuildParameter(withState: false),
            "torch._utils _rebuild_parameter_with_state": .rebuildParameter(withState: true),
            "torch._tensor _rebuild_from_type_v2": .rebuildFromType,
            "torch.storage UntypedStorage": .untypedStorage,
            "torch UntypedStorage": .untypedStorage,
            "torch Tensor": .tensorType,
            "torch.nn.parameter Parameter": .parameterType,
            "torch Size": .size,
            "torch device": .device,
            "_codecs encode": .encode,
            "builtins set": .set, "__builtin__ set": .set,
            "builtins frozenset": .set, "__builtin__ frozenset": .set,
        ]
        for (name, dtype) in storageTypes { table["torch " + name] = .storageType(dtype) }
        for (name, dtype) in dtypes { table["torch " + name] = .dtype(dtype) }
        return table
    }()

    /// The typed storage classes `torch.save` names, and their element types.
    static let storageTypes: [String: DType] = [
        "FloatStorage": .F32, "DoubleStorage": .F64, "HalfStorage": .F16, "BFloat16Storage": .BF16,
        "LongStorage": .I64, "IntStorage": .I32, "ShortStorage": .I16, "CharStorage": .I8, "ByteStorage": .U8,
        "BoolStorage": .BOOL, "ComplexFloatStorage": .C64,
    ]

    /// The dtypes (by every name torch gives them) that have a safetensors counterpart.
    static let dtypes: [String: DType] = [
        "float32": .F32, "float": .F32, "float64": .F64, "double": .F64, "float16": .F16, "half": .F16,
        "bfloat16": .BF16, "int64": .I64, "long": .I64, "int32": .I32, "int": .I32, "int16": .I16, "short": .I16,
        "int8": .I8, "uint8": .U8, "uint16": .U16, "uint32": .U32, "uint64": .U64, "bool": .BOOL,
        "complex64": .C64, "cfloat": .C64,
        "float8_e4m3fn": .F8_E4M3, "float8_e5m2": .F8_E5M2, "float8_e4m3fnuz": .F8_E4M3FNUZ,
        "float8_e5m2fnuz": .F8_E5M2FNUZ, "float8_e8m0fnu": .F8_E8M0,
    ]
}

/// A storage a tensor views: the zip record `data/<key>` of `byteCount` bytes. Tensors naming one
/// key share it (tied weights stay one set of bytes).
struct PickleStorage: Equatable {
    let key: String
    /// The element type of a typed storage; nil for an untyped one.
    let dtype: DType?
    let byteCount: Int
}

/// A tensor as the rebuild functions describe it: a view of a storage.
struct PickleTensor: Equatable {
    /// The storage's arena index.
    let storage: Int
    let dtype: DType
    /// In elements of `dtype`.
    let offset: Int
    let shape: [Int]
    let stride: [Int]
}

/// An object the unpickler made.
enum PickleObject {
    case tuple([PickleValue])
    case list([PickleValue])
    /// A dict or OrderedDict: entries in insertion order (a repeated key replaces its value).
    case dict(PickleDictionary)
    case set([PickleValue])
    case global(PickleGlobal, name: String)
    case storage(PickleStorage)
    case tensor(PickleTensor)
    /// A value the pickle may hold but a state dict never uses (a `torch.device`).
    case opaque(String)

    var kindName: String {
        switch self {
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .set: return "a set"
        case .global(_, let name): return name
        case .storage: return "a storage"
        case .tensor: return "a tensor"
        case .opaque(let what): return what
        }
    }
}

/// A pickled dict's entries, in order. Keys that are strings or integers are indexed, so setting
/// one again replaces its value as Python does; other keys are kept as they come.
struct PickleDictionary {
    enum Key: Hashable {
        case string(String)
        case int(Int)
    }

    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var index: [Key: Int] = [:]

    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        let indexed: Key?
        switch key {
        case .string(let s): indexed = .string(s)
        case .int(let i): indexed = .int(i)
        case .bool(let b): indexed = .int(b ? 1 : 0)
        default: indexed = nil
        }
        if let indexed, let at = index[indexed] {
            values[at] = value
            return
        }
        if let indexed { index[indexed] = keys.count }
        keys.append(key)
        values.append(value)
    }

    func value(forString key: String) -> PickleValue? {
        index[.string(key)].map { values[$0] }
    }

    var count: Int { keys.count }
}

/// The objects of one unpickling, addressed by index, with each one's nesting depth when made.
struct PickleArena {
    var objects: [PickleObject] = []
    var depths: [Int] = []

    func depth(of value: PickleValue) -> Int {
        if case .object(let index) = value { return depths[index] }
        return 0
    }

    mutating func add(_ object: PickleObject, depth: Int) -> PickleValue {
        objects.append(object)
        depths.append(depth)
        return .object(objects.count - 1)
    }
}

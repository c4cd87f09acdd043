/// A safetensors element type, named exactly as the format spells it.
///
/// Every dtype of the specification is recognised so that any valid file opens; only F32, F16,
/// BF16 and F64 tensors are merged, the others (integers, bool, complex, 8/6/4-bit floats) are
/// copied from the base model unchanged.
public enum DType: String, CaseIterable, Sendable, Codable {
    case BOOL, U8, I8, I16, U16, I32, U32, I64, U64
    case F16, BF16, F32, F64, C64
    case F8_E4M3, F8_E5M2, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ
    case F6_E2M3, F6_E3M2, F4

    /// Bits per element (sub-byte types pack 4 or 6 bits per element).
    public var bitWidth: Int {
        switch self {
        case .BOOL, .U8, .I8, .F8_E4M3, .F8_E5M2, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 8
        case .I16, .U16, .F16, .BF16: return 16
        case .I32, .U32, .F32: return 32
        case .I64, .U64, .F64, .C64: return 64
        case .F6_E2M3, .F6_E3M2: return 6
        case .F4: return 4
        }
    }

    /// Whole bytes per element; nil for the sub-byte types.
    public var byteWidth: Int? { bitWidth % 8 == 0 ? bitWidth / 8 : nil }

    /// The float types MergeKit merges (converted to Float32, or Float64 for F64).
    public var isMergeable: Bool {
        switch self {
        case .F16, .BF16, .F32, .F64: return true
        default: return false
        }
    }

    /// Byte size of `elementCount` elements, nil on overflow or when the bits do not fill whole
    /// bytes (a sub-byte tensor whose element count does not pack evenly).
    public func byteCount(elements elementCount: Int) -> Int? {
        let (bits, overflow) = elementCount.multipliedReportingOverflow(by: bitWidth)
        guard !overflow, bits % 8 == 0 else { return nil }
        return bits / 8
    }

    /// The output dtypes a merge can produce.
    public static let mergeableTypes: [DType] = [.F32, .F16, .BF16, .F64]
}

/// The merge's NaN/Inf policy, for every method: **a non-finite value is an error, never a silent
/// result**.
///
/// - **Inputs.** A NaN or ±∞ in an element a merge reads — in the base, a fine-tuned model, a
///   task-vector file or a LoRA product — is an error naming the file, the tensor, the element
///   and the fix. A task vector θᵢ − θ₀ that overflows counts as non-finite too. The one
///   exception is an element that is the *same* non-finite value everywhere: the base and every
///   fine-tuned model hold it bit for bit (task-vector and LoRA inputs hold τ = 0 there), like a
///   float attention mask of −∞ copied unchanged into every checkpoint. There τ = 0 and the
///   output keeps the base's value.
/// - **Outputs.** A merged value that is not finite, or does not fit the output dtype (an F16
///   overflow, a huge `lora_alpha`), is an error naming the tensor, the element and the fix (a
///   wider dtype or a smaller scale). Tensors copied from the base are written as they are.
///
/// The executor checks every chunk in the loops that already touch it (the conversion of the
/// inputs, the addition of θ₀), as maxima of the magnitude bits; only a chunk that fails that
/// test is examined element by element here. Failing merges write nothing: the writer is atomic.
enum FiniteCheck {
    /// What happens to a non-finite task-vector element.
    enum Handling: Sendable {
        /// The merge's policy: an error (the shared exceptions aside).
        case fail
        /// `analyze`: the element counts as τ = 0 and is counted (`ChunkSource.nonFiniteCounts`).
        case exclude
    }

    /// How many task-vector elements of one input were non-finite, by kind.
    struct Counts: Sendable, Equatable {
        var nan = 0
        var positiveInfinity = 0
        var negativeInfinity = 0
        var total: Int { nan + positiveInfinity + negativeInfinity }

        mutating func count<T: BinaryFloatingPoint>(_ value: T) {
            if value.isNaN { nan += 1 } else if value < 0 { negativeInfinity += 1 } else { positiveInfinity += 1 }
        }

        static func += (lhs: inout Counts, rhs: Counts) {
            lhs.nan += rhs.nan
            lhs.positiveInfinity += rhs.positiveInfinity
            lhs.negativeInfinity += rhs.negativeInfinity
        }
    }

    /// One input of a chunk being checked: where its τ came from and, for stored tensors, the
    /// raw bytes of the chunk (to compare a fine-tuned model's value with the base's bit for bit).
    struct Input {
        let input: MergeInput
        let source: InputSource
        let raw: UnsafeRawPointer?
    }

    static let inputFix: MergeKitError.Text = "Repair this checkpoint or leave it out (\(term: .finitenessScan) counts the NaN and ±Inf values of every tensor); only a value that the base and every input hold identically (such as a −Inf mask) is kept as it is"

    /// The slow path for a chunk whose τ (or base, when some input is not a fine-tuned model)
    /// holds a NaN or ±∞: applies the shared-value exception (τ = 0 there) and throws for the
    /// first element that breaks the policy — or, with `.exclude`, zeroes it and counts it.
    static func resolveInputs<T: MergeScalar>(_ tensor: PlannedTensor, inputs: [Input], basePath: String, chunkStart: Int,
                                              base: UnsafeBufferPointer<T>, deltas: [UnsafeMutableBufferPointer<T>],
                                              handling: Handling = .fail, counts: inout [Counts]) throws(MergeKitError) {
        for k in 0..<base.count {
            let b = base[k]
            let baseFinite = b.isFinite
            for (i, item) in inputs.enumerated() {
                let d = deltas[i][k]
                let problem: MergeKitError?
                switch item.source {
                case .zero:
                    problem = nil
                case .tensor(let entry) where item.input.kind == .model:
                    if d.isFinite { problem = nil; break }
                    var value = T.zero
                    T.load(item.raw! + k * entry.info.dtype.byteWidth!, dtype: entry.info.dtype, count: 1, into: &value)
                    if !baseFinite && T.magnitudeKey(value) == T.magnitudeKey(b) && value.sign == b.sign {
                        deltas[i][k] = 0
                        problem = nil
                    } else if !value.isFinite {
                        problem = inputError(file: item.input.path, tensor, chunkStart + k,
                                             "is \(name(value))" + (baseFinite ? "" : " where the base (\(basePath)) holds \(name(b))"))
                    } else if !baseFinite {
                        problem = inputError(file: basePath, tensor, chunkStart + k,
                                             "is \(name(b)) in the base, where \(item.input.path) holds the finite value \(value)")
                    } else {
                        problem = inputError(file: item.input.path, tensor, chunkStart + k,
                                             "gives a task vector θ − θ₀ = \(value) − \(b) that overflows \(T.self)")
                    }
                default:
                    let what = item.input.kind == .lora ? "LoRA update s·B·A" : "task vector"
                    if !d.isFinite {
                        let cause = item.input.kind == .lora ? " (a factor holds NaN or ±Inf, or s = lora_alpha/r is too large)" : ""
                        problem = inputError(file: item.input.path, tensor, chunkStart + k, "of the \(what) is \(name(d))\(cause)")
                    } else if !baseFinite && d != 0 {
                        problem = inputError(file: basePath, tensor, chunkStart + k,
                                             "is \(name(b)) in the base, where the \(what) \(item.input.path) is \(d), not 0")
                    } else {
                        problem = nil
                    }
                }
                guard let problem else { continue }
                if handling == .fail { throw problem }
                counts[i].count(d.isFinite ? b : d)
                deltas[i][k] = 0
            }
        }
    }

    /// The slow path for a chunk of results (θ₀ + τ, or τ) with a value at or past
    /// `overflowKey(storingAs: dtype)`: where the base itself is non-finite (an element every
    /// input shared, see above) the output takes the base's value (τ: 0); anywhere else it is an
    /// error naming the tensor, the element and the fix.
    static func resolveOutput<T: MergeScalar>(_ tensor: PlannedTensor, output: String, chunkStart: Int,
                                              out: UnsafeMutableBufferPointer<T>, base: UnsafeBufferPointer<T>?,
                                              emit: EmitKind) throws(MergeKitError) {
        let dtype = tensor.output.dtype
        let limit = T.overflowKey(storingAs: dtype)
        for k in 0..<out.count where T.magnitudeKey(out[k]) >= limit {
            if let base, !base[k].isFinite {
                out[k] = emit == .model ? base[k] : 0
                continue
            }
            let value = out[k]
            let position = describe(chunkStart + k, shape: tensor.output.shape)
            if value.isFinite {
                let largest = largestFinite[dtype] ?? "its largest finite value"
                throw MergeKitError(.nonFiniteValue, file: output, tensor: tensor.name,
                    "the merged value at element \(position) is \(value), beyond \(dtype.rawValue)'s largest finite value \(largest), so it would be written as \(value < 0 ? "-Inf" : "+Inf")",
                    fix: dtype == .F16 ? "Write \(term: .widerDType), or merge with smaller weights or \(term: .smallerScale)"
                                       : "Write \(term: .outputDType("F32")), or merge with smaller weights or \(term: .smallerScale)")
            }
            throw MergeKitError(.nonFiniteValue, file: output, tensor: tensor.name,
                "the merged value at element \(position) is \(name(value)): the merge's arithmetic overflowed",
                fix: "Merge with smaller weights or \(term: .smallerScale) (a LoRA adapter's τ is scaled by lora_alpha/r: check that it is not huge)")
        }
    }

    static let largestFinite: [DType: String] = [.F16: "65504", .BF16: "3.3895e+38", .F32: "3.4028e+38"]

    private static func inputError(file: String, _ tensor: PlannedTensor, _ index: Int, _ what: String) -> MergeKitError {
        MergeKitError(.nonFiniteValue, file: file, tensor: tensor.name,
                      "element \(describe(index, shape: tensor.output.shape)) \(what); merges refuse NaN and ±Inf",
                      fix: inputFix)
    }

    /// "NaN", "+Inf" or "-Inf".
    static func name<T: BinaryFloatingPoint>(_ value: T) -> String {
        value.isNaN ? "NaN" : (value.isInfinite ? (value < 0 ? "-Inf" : "+Inf") : "\(value)")
    }

    /// Element `index` of a row-major tensor of `shape`: "[i, j] (flat index n)".
    static func describe(_ index: Int, shape: [Int]) -> String {
        var rest = index
        var position: [Int] = []
        for size in shape.reversed() {
            position.insert(size > 0 ? rest % size : 0, at: 0)
            rest = size > 0 ? rest / size : 0
        }
        return "[\(position.map(String.init).joined(separator: ", "))] (flat index \(index))"
    }
}

import Foundation
import FuzzSupport
import MergeKit

/// libFuzzer target for the PyTorch checkpoint reader: the ZIP directory, the restricted
/// unpickler and the state-dict and storage checks (`PyTorchArchive.parse`).
///
/// Every input is read twice: as a whole checkpoint file, and as the pickle (`data.pkl`) of a
/// well-formed archive (`ZipBytes.torchArchive`) with storages `0`–`3` of 64, 16, 6 and 0 bytes,
/// so that mutations reach the unpickler directly. Besides "no crash, no hang, no sanitizer
/// report" (hostile pickles — huge memo indices, deep nesting, forbidden globals — must be
/// refused, never followed), it checks properties that must hold for every input, and traps when
/// one fails so libFuzzer records it:
///
/// - a rejection names the file it was given;
/// - an accepted checkpoint's tensor names are unique, every storage lies inside the file, every
///   view's elements lie inside its storage, and a contiguous view's bytes inside its storage.
///
/// Built with `-sanitize=fuzzer -D FUZZING` (see `Fuzz/run.sh`), `main` hands over to libFuzzer; in
/// a normal build it runs the same checks on the files named as arguments (see `FuzzDriver`).
enum PickleFuzz {
    static let fileName = "fuzz-input.pt"
    static let storages: [(key: String, bytes: [UInt8])] = [
        ("0", (0..<64).map { UInt8($0) }), ("1", [UInt8](repeating: 7, count: 16)), ("2", [1, 2, 3, 4, 5, 6]), ("3", []),
    ]

    static func check(_ bytes: UnsafeRawBufferPointer) {
        checkFile(bytes)
        let wrapped = ZipBytes.torchArchive(pickle: Array(bytes), storages: storages)
        wrapped.withUnsafeBytes { checkFile($0) }
    }

    static func checkFile(_ bytes: UnsafeRawBufferPointer) {
        let archive: PyTorchArchive
        do throws(MergeKitError) {
            archive = try PyTorchArchive.parse(fileBytes: bytes, file: fileName)
        } catch {
            guard error.file == fileName, error.description.contains(fileName) else {
                fatalError("a rejection does not name the file: \(error)")
            }
            return
        }
        var names = Set<String>()
        for tensor in archive.tensors {
            guard names.insert(tensor.name).inserted else { fatalError("accepted two tensors named \(tensor.name)") }
            guard tensor.storageRange.lowerBound >= 0, tensor.storageRange.upperBound <= bytes.count else {
                fatalError("accepted a storage outside the file: \(tensor)")
            }
            let width = tensor.dtype.byteWidth!
            let elements = tensor.storageRange.count / width
            if tensor.elementCount > 0 {
                var last = tensor.storageOffset
                for (size, stride) in zip(tensor.shape, tensor.stride) { last += (size - 1) * stride }
                guard last < elements else { fatalError("accepted a view past its storage: \(tensor)") }
            }
            if let range = tensor.byteRange, !range.isEmpty {
                guard range.lowerBound >= tensor.storageRange.lowerBound, range.upperBound <= tensor.storageRange.upperBound else {
                    fatalError("accepted a contiguous view whose bytes leave its storage: \(tensor)")
                }
            }
        }
    }
}

#if FUZZING
/// The input callback. (Only in the fuzzing build: the test bundle links this target together
/// with header-fuzz, which defines the C symbol in every build.)
@_cdecl("LLVMFuzzerTestOneInput")
public func pickleFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    PickleFuzz.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif

/// Runs libFuzzer (`-D FUZZING`) or replays the files named on the command line (see FuzzDriver).
@main
struct PickleFuzzMain {
    static func main() {
        #if FUZZING
        FuzzDriver.main(name: "pickle-fuzz", check: PickleFuzz.check, callback: pickleFuzzTestOneInput)
        #else
        FuzzDriver.main(name: "pickle-fuzz", check: PickleFuzz.check, callback: nil)
        #endif
    }
}

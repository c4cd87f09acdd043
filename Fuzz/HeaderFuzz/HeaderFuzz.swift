import Foundation
import FuzzSupport
import MergeKit

/// libFuzzer target for the safetensors header reader, the JSON parser and the LoRA adapter
/// config reader (with its regular expressions).
///
/// Every input is run through `SafeTensorsHeader.parse(fileBytes:file:)` (as a whole file),
/// `JSONParser.parse` (as JSON text) and `LoRAAdapter.parseConfig` (as `adapter_config.json`,
/// whose accepted patterns are then matched against module names). Besides "no crash, no hang,
/// no sanitizer report" (a pattern that backtracked would hang), it checks properties that must
/// hold for every input, and traps when one fails so libFuzzer records it:
///
/// - a rejection names the file it was given;
/// - an accepted header describes contiguous tensors from byte 0 to the file's end, each with the
///   byte size its shape and dtype give, and writing it back with `SafeTensorsLayout` and reading
///   that again gives the same tensors and metadata;
/// - accepted JSON serialises (compact and indented) to text that parses back to the same value;
/// - a rejected adapter config names the file it was given.
///
/// Built with `-sanitize=fuzzer -D FUZZING` (see `Fuzz/run.sh`), `main` hands over to libFuzzer; in
/// a normal build it runs the same checks on the files named as arguments (see `FuzzDriver`).
enum HeaderFuzz {
    static let fileName = "fuzz-input.safetensors"

    static func check(_ bytes: UnsafeRawBufferPointer) {
        checkHeader(bytes)
        checkJSON(bytes)
        checkLoRAConfig(bytes)
        if bytes.count > 8 {
            checkJSON(UnsafeRawBufferPointer(rebasing: bytes[8...]))
        }
    }

    static func checkHeader(_ bytes: UnsafeRawBufferPointer) {
        let header: SafeTensorsHeader
        do throws(MergeKitError) {
            header = try SafeTensorsHeader.parse(fileBytes: bytes, file: fileName)
        } catch {
            guard error.file == fileName, error.description.contains(fileName) else {
                fatalError("a rejection does not name the file: \(error)")
            }
            return
        }
        var end = 0
        var names = Set<String>()
        for tensor in header.tensors {
            guard tensor.begin == end, tensor.end >= tensor.begin,
                  tensor.dtype.byteCount(elements: tensor.elementCount) == tensor.byteCount,
                  names.insert(tensor.name).inserted, tensor.name != SafeTensorsHeader.metadataKey else {
                fatalError("accepted a malformed tensor entry: \(tensor)")
            }
            end = tensor.end
        }
        guard header.dataStart + end == bytes.count else {
            fatalError("accepted a header whose data does not end at the file's end: \(header)")
        }

        // Write it back and read it again.
        let layout = SafeTensorsLayout(specs: header.tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                       metadata: header.metadata)
        let file = layout.prefix + [UInt8](repeating: 0, count: layout.dataSize)
        let result = file.withUnsafeBytes { raw in
            Result { () throws(MergeKitError) in try SafeTensorsHeader.parse(fileBytes: raw, file: fileName) }
        }
        guard case .success(let again) = result else {
            fatalError("a header written back from an accepted one is rejected: \(result)")
        }
        guard again.tensors == header.tensors, again.metadata == header.metadata else {
            fatalError("writing an accepted header back changed it: \(header.tensors) != \(again.tensors)")
        }
    }

    static let configName = "adapter_config.json"
    /// Module names every accepted config is matched against: short, nested, and long ones (a
    /// pattern that backtracks blows up on the long one).
    static let moduleNames = [
        "model.layers.0.self_attn.q_proj", "model.layers.17.mlp.down_proj", "transformer.h.3.attn.c_attn", "lm_head",
        String(repeating: "model.layers.12.self_attn.", count: 40) + "q_proj", String(repeating: "x", count: 600),
    ]

    static func checkLoRAConfig(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.first == UInt8(ascii: "{") else { return }
        let config: LoRAAdapter.Config
        do throws(MergeKitError) {
            config = try LoRAAdapter.parseConfig(Array(bytes), file: configName)
        } catch {
            guard error.file == configName else { fatalError("a config rejection does not name the file: \(error)") }
            return
        }
        for name in moduleNames {
            _ = config.select(name, linear: true)
            _ = config.rank(for: name)
            _ = config.alpha(for: name + "Q")
        }
    }

    static func checkJSON(_ bytes: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(bytes) else { return }
        for indent in [0, 2] {
            let text = Array(value.serialized(indent: indent).utf8)
            guard let again = try? JSONParser.parse(text), again == value else {
                fatalError("JSON does not survive a round trip (indent \(indent)): \(String(decoding: text, as: UTF8.self))")
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func headerFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    HeaderFuzz.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Runs libFuzzer (`-D FUZZING`) or replays the files named on the command line (see FuzzDriver).
@main
struct HeaderFuzzMain {
    static func main() {
        FuzzDriver.main(name: "header-fuzz", check: HeaderFuzz.check, callback: headerFuzzTestOneInput)
    }
}

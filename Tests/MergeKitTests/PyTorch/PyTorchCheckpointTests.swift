import Foundation
import Testing
@testable import MergeKit

/// Files written by `torch.save` (Fixtures/pytorch/make_pytorch_fixtures.py) read as the tensors
/// PyTorch holds: each compared byte for byte with the safetensors file the script wrote from the
/// same state dict (every tensor made contiguous and unshared).
@Suite("PyTorch checkpoints")
struct PyTorchCheckpointTests {
    /// Every tensor's raw bytes, by name.
    static func bytes(_ checkpoint: Checkpoint) -> [String: (dtype: DType, shape: [Int], bytes: [UInt8])] {
        var result: [String: (dtype: DType, shape: [Int], bytes: [UInt8])] = [:]
        for entry in checkpoint.entries {
            result[entry.name] = (entry.info.dtype, entry.info.shape, Array(entry.file.bytes(of: entry.info)))
        }
        return result
    }

    /// `checkpoint` holds exactly the tensors of the safetensors file `golden`, byte for byte,
    /// also when read with `pread` through `TensorReader` (as merges read).
    static func expectSameTensors(_ checkpoint: Checkpoint, as golden: String) throws {
        let expected = bytes(try Checkpoint(path: TestSupport.fixture(golden)))
        let actual = bytes(checkpoint)
        #expect(Set(actual.keys) == Set(expected.keys), "\(checkpoint.path)")
        for (name, want) in expected {
            guard let got = actual[name] else { continue }
            #expect(got.dtype == want.dtype && got.shape == want.shape, "\(name): \(got.dtype) \(got.shape) vs \(want.dtype) \(want.shape)")
            #expect(got.bytes == want.bytes, "\(name) differs from \(golden)")
        }
        for entry in checkpoint.entries where entry.info.byteCount > 0 {
            var read = [UInt8](repeating: 0, count: entry.info.byteCount)
            try read.withUnsafeMutableBytes { try TensorReader(entry).read(bytes: 0..<entry.info.byteCount, into: $0.baseAddress!) }
            #expect(read == expected[entry.name]?.bytes, "\(entry.name) read with pread differs")
        }
    }

    @Test("Every dtype (F32, F16, BF16, F64, integers, bool, F8), a scalar and an empty tensor load as torch saved them")
    func allDTypes() throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/all_dtypes.pt"))
        try Self.expectSameTensors(checkpoint, as: "pytorch/all_dtypes.safetensors")
        #expect(checkpoint.tensorNames == ["f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "u16", "u32", "u64",
                                           "bool", "f8_e4m3", "f8_e5m2", "scalar", "empty"])
        #expect(checkpoint.layout == .file && checkpoint.files.count == 1)
    }

    @Test("Views, offsets and strides: tied weights, slices, transposes, strided and expanded views, parameters",
          arguments: ["views.pt", "protocol4.pt", "protocol5.pt"])
    func views(file: String) throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/" + file))
        try Self.expectSameTensors(checkpoint, as: "pytorch/views.safetensors")
        #expect(checkpoint.tensorNames == ["embed.weight", "lm_head.weight", "rows", "transposed", "strided", "column", "inner",
                                           "expanded", "bf16.whole", "bf16.transposed", "bf16.tail", "param", "attributed"])
    }

    @Test("Shared storages stay shared: tied weights and contiguous slices are the archive's own bytes, only strided views are gathered")
    func sharedStorages() throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/views.pt"))
        let embed = try #require(checkpoint.entry(named: "embed.weight"))
        let head = try #require(checkpoint.entry(named: "lm_head.weight"))
        let rows = try #require(checkpoint.entry(named: "rows"))
        #expect(embed.file === head.file && embed.info.begin == head.info.begin && embed.info.end == head.info.end)
        #expect(rows.file === embed.file && rows.info.begin == embed.info.begin + 6 * 4)
        let archive = checkpoint.files[0]
        for name in ["embed.weight", "rows", "bf16.whole", "bf16.tail", "param", "attributed"] {
            #expect(checkpoint.entry(named: name)?.file === archive, "\(name) is read in place")
        }
        for name in ["transposed", "strided", "column", "inner", "expanded", "bf16.transposed"] {
            #expect(checkpoint.entry(named: name)?.file !== archive, "\(name) is gathered")
        }
        // The gathered views' scratch file is not a file of the checkpoint's on disk.
        #expect(checkpoint.files.count == 2 && checkpoint.filePaths == [checkpoint.path])
        // Storages are stored 64-byte aligned in the archive, and read where they are.
        #expect(embed.file.fileOffset(of: embed.info) % 64 == 0)
    }

    @Test("A state dict nested under state_dict (a training checkpoint) or model", arguments: ["nested_state_dict.ckpt", "nested_model.pth"])
    func nested(file: String) throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/" + file))
        try Self.expectSameTensors(checkpoint, as: "pytorch/nested_state_dict.safetensors")
        #expect(checkpoint.tensorNames == ["layer.weight", "layer.bias"])
    }

    @Test("A sharded directory (pytorch_model.bin.index.json) with its config")
    func sharded() throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/sharded"))
        try Self.expectSameTensors(checkpoint, as: "pytorch/sharded.safetensors")
        #expect(checkpoint.layout == .sharded(index: "pytorch_model.bin.index.json"))
        #expect(checkpoint.filePaths.map { FileSystem.lastComponent(of: $0) } == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"])
        #expect(try checkpoint.companionFiles() == ["config.json"])
    }

    @Test("The safetensors fixture models re-saved by torch.save hold the same tensors", arguments: ["f32", "bf16"], ["base", "ft_a", "ft_b"])
    func resavedModels(dtype: String, model: String) throws {
        let pytorch = try Checkpoint(path: TestSupport.fixture("pytorch/\(dtype)_bin/\(model)"))
        let original = try Checkpoint(path: TestSupport.fixture("\(dtype)/\(model)"))
        let a = Self.bytes(pytorch), b = Self.bytes(original)
        #expect(Set(a.keys) == Set(b.keys))
        for (name, value) in b { #expect(a[name]?.bytes == value.bytes, "\(name)") }
    }

    @Test("The legacy format (before PyTorch 1.6) is refused, saying how to re-save it")
    func legacy() throws {
        let path = TestSupport.fixture("pytorch/legacy.pt")
        let error = try #require(throws: MergeKitError.self) { try Checkpoint(path: path) }
        #expect(error.code == .legacyCheckpointFormat && error.file == path)
        #expect(error.description.contains("_use_new_zipfile_serialization=False") && error.description.contains("torch.save(torch.load("))
    }

    @Test("A directory prefers safetensors, ignores training state, and names ambiguity")
    func directoryChoice() throws {
        let dir = TestSupport.temporaryDirectory("pytorch-dir")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        // A trainer's output: the model file beside its arguments, optimizer and random state.
        try fm.createDirectory(atPath: dir + "/trainer", withIntermediateDirectories: true)
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.pt"), toPath: dir + "/trainer/model.pt")
        for name in ["training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"] {
            try fm.copyItem(atPath: TestSupport.fixture("pytorch/legacy.pt"), toPath: dir + "/trainer/" + name)
        }
        let trainer = try Checkpoint(path: dir + "/trainer")
        #expect(trainer.layout == .directory(weights: "model.pt") && trainer.entries.count == 13)
        // Both formats: safetensors wins, as in transformers.
        try fm.createDirectory(atPath: dir + "/both", withIntermediateDirectories: true)
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.pt"), toPath: dir + "/both/pytorch_model.bin")
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.safetensors"), toPath: dir + "/both/model.safetensors")
        #expect(try Checkpoint(path: dir + "/both").layout == .directory(weights: "model.safetensors"))
        // Two candidate files without an index.
        try fm.createDirectory(atPath: dir + "/two", withIntermediateDirectories: true)
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.pt"), toPath: dir + "/two/a.pt")
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.pt"), toPath: dir + "/two/b.pt")
        let error = try #require(throws: MergeKitError.self) { try Checkpoint(path: dir + "/two") }
        #expect(error.code == .ambiguousCheckpoint && error.description.contains("a.pt, b.pt"))
        // A .bin that is neither format.
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: dir + "/junk.bin"))
        let junk = try #require(throws: MergeKitError.self) { try Checkpoint(path: dir + "/junk.bin") }
        #expect(junk.code == .notACheckpoint && junk.file == dir + "/junk.bin")
        // A safetensors file named .bin opens as safetensors.
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/views.safetensors"), toPath: dir + "/st.bin")
        #expect(try Checkpoint(path: dir + "/st.bin").entries.count == 13)
    }
}

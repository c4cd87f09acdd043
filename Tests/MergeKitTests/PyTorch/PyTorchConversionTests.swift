import Foundation
import Testing
@testable import MergeKit

/// `MergePlan(converting:output:)` (`merge-cli convert`) writes what torch saved as safetensors,
/// and PyTorch checkpoints merge exactly like their safetensors conversions.
@Suite("PyTorch conversion and merging")
struct PyTorchConversionTests {
    @discardableResult
    static func convert(_ input: String, to output: String, maxShardSize: Int? = nil) throws -> MergeRun.Outcome {
        let plan = try MergePlan(converting: try Checkpoint(path: LibraryMerge.path(input)),
                                 output: OutputSpec(path: output, maxShardSize: maxShardSize))
        return try MergeRun.run([plan], threads: 2)
    }

    @Test("Converting each torch.save fixture writes the tensors torch holds (safetensors written by PyTorch)",
          arguments: [("pytorch/all_dtypes.pt", "pytorch/all_dtypes.safetensors"), ("pytorch/views.pt", "pytorch/views.safetensors"),
                      ("pytorch/protocol4.pt", "pytorch/views.safetensors"), ("pytorch/nested_state_dict.ckpt", "pytorch/nested_state_dict.safetensors"),
                      ("pytorch/sharded", "pytorch/sharded.safetensors")])
    func convertsToGolden(input: String, golden: String) throws {
        let dir = TestSupport.temporaryDirectory("convert")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.convert(input, to: dir + "/out.safetensors")
        let written = try Checkpoint(path: dir + "/out.safetensors")
        try PyTorchCheckpointTests.expectSameTensors(written, as: golden)
        // In the source's order, with transformers' metadata.
        #expect(written.tensorNames == (try Checkpoint(path: TestSupport.fixture(input))).tensorNames)
        #expect(written.metadata == ["format": "pt"])
    }

    @Test("A directory output is sharded at --max-shard-size, with the index and the companions")
    func shardedOutput() throws {
        let dir = TestSupport.temporaryDirectory("convert")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.convert("pytorch/sharded", to: dir + "/out", maxShardSize: 100)
        let listing = Set(TestSupport.listing(dir + "/out"))
        #expect(listing.isSuperset(of: ["config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors"]), "\(listing)")
        let written = try Checkpoint(path: dir + "/out")
        try PyTorchCheckpointTests.expectSameTensors(written, as: "pytorch/sharded.safetensors")
        // Converting safetensors (here the sharded result back to one file) copies it unchanged.
        try Self.convert(dir + "/out", to: dir + "/again.safetensors")
        try PyTorchCheckpointTests.expectSameTensors(try Checkpoint(path: dir + "/again.safetensors"), as: "pytorch/sharded.safetensors")
    }

    @Test("Converting refuses an output dtype, a task-vector output, and an output that is its input")
    func refusals() throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("pytorch/views.pt"))
        let dtype = try #require(throws: MergeKitError.self) {
            try MergePlan(converting: checkpoint, output: OutputSpec(path: "/tmp/x.safetensors", dtype: .F16))
        }
        #expect(dtype.code == .invalidArgument)
        let emit = try #require(throws: MergeKitError.self) {
            try MergePlan(converting: checkpoint, output: OutputSpec(path: "/tmp/x.safetensors", emit: .taskVector))
        }
        #expect(emit.code == .invalidArgument)
        let safetensors = try Checkpoint(path: TestSupport.fixture("pytorch/views.safetensors"))
        let itself = try #require(throws: MergeKitError.self) {
            try MergePlan(converting: safetensors, output: OutputSpec(path: safetensors.path, overwrite: true))
        }
        #expect(itself.code == .outputIsInput || itself.problems.contains { $0.code == .outputIsInput }, "\(itself)")
    }

    @Test("A .bin directory's companions: configs and tokenizer files are copied, its weights never, a trainer's state is named as left behind; an existing .bin directory is not replaced")
    func companionPolicy() throws {
        let dir = TestSupport.temporaryDirectory("bin-companions")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        // A trainer's output directory: the model, its config and tokenizer, the trainer's state, a note.
        try fm.copyItem(atPath: TestSupport.fixture("pytorch/f32_bin/base"), toPath: dir + "/trained")
        for name in ["training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"] {
            try fm.copyItem(atPath: TestSupport.fixture("pytorch/legacy.pt"), toPath: dir + "/trained/" + name)
        }
        try Data("notes".utf8).write(to: URL(fileURLWithPath: dir + "/trained/notes.txt"))
        let checkpoint = try Checkpoint(path: dir + "/trained")
        let selection = try checkpoint.companionSelection()
        #expect(selection.companions.map(\.name) == ["config.json", "generation_config.json", "tokenizer_config.json"])
        #expect(selection.skipped.map(\.name) == ["notes.txt", "optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin"])
        #expect(selection.skipped.filter { $0.reason.contains("training state") }.count == 4)
        let plan = try MergePlan(converting: checkpoint, output: OutputSpec(path: dir + "/out"))
        #expect(plan.skippedFiles.count == 5)
        _ = try MergeRun.run([plan], threads: 2)
        #expect(TestSupport.listing(dir + "/out").sorted() == ["config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"])
        // An existing directory holding a PyTorch model is the user's: --overwrite does not replace it
        // (its pytorch_model.bin would be deleted, or left stale beside the new safetensors).
        let existing = try #require(throws: MergeKitError.self) {
            try MergePlan(converting: checkpoint, output: OutputSpec(path: TestSupport.fixture("pytorch/f32_bin/ft_a"), overwrite: true))
        }
        let refusal = existing.code == .outputNotReplaceable ? existing : existing.problems.first { $0.code == .outputNotReplaceable }
        #expect(refusal?.description.contains("pytorch_model.bin") == true, "\(existing)")
    }

    /// Every output file's bytes, by name.
    static func files(_ path: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        if FileSystem.kind(of: path) == .directory {
            for name in TestSupport.listing(path) where name != "README.md" {
                result[name] = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
            }
        } else {
            result[""] = try Data(contentsOf: URL(fileURLWithPath: path))
        }
        return result
    }

    @Test("Merging .bin models gives the same bytes as merging their safetensors conversions",
          arguments: [("ties", "f32"), ("task-arithmetic", "bf16"), ("dare", "f32"), ("model-stock", "bf16"), ("tsv-m", "f32")])
    func mergeEqualsConvertedMerge(method: String, dtype: String) throws {
        let dir = TestSupport.temporaryDirectory("bin-merge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for model in ["base", "ft_a", "ft_b"] {
            try Self.convert("pytorch/\(dtype)_bin/\(model)", to: dir + "/\(model)")
        }
        let built = try LibraryMerge.method(method)
        for (label, root) in [("bin", TestSupport.fixture("pytorch/\(dtype)_bin")), ("converted", dir)] {
            try LibraryMerge.run(built, LibraryMerge.Inputs(base: root + "/base", models: [root + "/ft_a", root + "/ft_b"]),
                                 output: OutputSpec(path: dir + "/merged-\(label)"))
        }
        let fromBin = try Self.files(dir + "/merged-bin"), fromConverted = try Self.files(dir + "/merged-converted")
        #expect(fromBin.keys.sorted() == fromConverted.keys.sorted())
        for (name, bytes) in fromBin { #expect(bytes == fromConverted[name], "\(name) differs") }
        #expect(fromBin.keys.contains("model.safetensors") && fromBin.keys.contains("config.json"))
    }

    @Test("A PEFT adapter saved without safetensors (adapter_model.bin) merges to PEFT's merge_and_unload(), as its safetensors twin does")
    func adapterBin() throws {
        let dir = TestSupport.temporaryDirectory("lora-bin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let adapter = try LoRAAdapter(path: TestSupport.fixture("pytorch/lora_bin"))
        #expect(adapter.weights.path.hasSuffix("/adapter_model.bin") && adapter.modules.count == 6)
        for (label, path) in [("bin", "pytorch/lora_bin"), ("safetensors", "svd_lora/lora_a")] {
            let plan = try MergePlan(base: try Checkpoint(path: TestSupport.fixture("f32/base")),
                                     inputs: [MergeInput(lora: try LoRAAdapter(path: TestSupport.fixture(path)))],
                                     method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/\(label).safetensors"))
            _ = try MergeExecutor.run(plan, threads: 2)
        }
        let fromBin = try Self.files(dir + "/bin.safetensors"), fromSafetensors = try Self.files(dir + "/safetensors.safetensors")
        #expect(fromBin[""] != nil && fromBin[""] == fromSafetensors[""])
        // PEFT's own merge of the same adapter (Fixtures/svd_lora/cases.json: merged_lora_a, within 2e-7).
        let merged = TestSupport.values(try Checkpoint(path: dir + "/bin.safetensors"))
        for (name, reference) in TestSupport.values(try Checkpoint(path: TestSupport.fixture("svd_lora/merged_lora_a.safetensors"))) {
            expectClose(try #require(merged[name]).values, reference.values, tolerance: 2e-7, name)
        }
        // Both files: the safetensors one is read, as PEFT reads it.
        try FileManager.default.createDirectory(atPath: dir + "/both", withIntermediateDirectories: true)
        for name in ["adapter_config.json", "adapter_model.bin"] {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("pytorch/lora_bin/" + name), toPath: dir + "/both/" + name)
        }
        try FileManager.default.copyItem(atPath: TestSupport.fixture("svd_lora/lora_a/adapter_model.safetensors"),
                                         toPath: dir + "/both/adapter_model.safetensors")
        #expect(try LoRAAdapter(path: dir + "/both").weights.path == dir + "/both/adapter_model.safetensors")
        // Neither: the error names both files.
        try FileManager.default.removeItem(atPath: dir + "/both/adapter_model.bin")
        try FileManager.default.removeItem(atPath: dir + "/both/adapter_model.safetensors")
        let missing = try #require(throws: MergeKitError.self) { try LoRAAdapter(path: dir + "/both") }
        #expect(missing.code == .fileNotFound && missing.file == dir + "/both/adapter_model.safetensors"
                && missing.description.contains("adapter_model.bin"), "\(missing)")
    }
}

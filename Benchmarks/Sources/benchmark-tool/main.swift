// benchmark-tool: builds synthetic Llama-shaped checkpoint sets and measures the machine's I/O
// bound for the merge benchmark (Benchmarks/run.sh). Not part of the library.
//
//   benchmark-tool synth --out DIR [--hidden 2048 --layers 22 --intermediate 5632 --vocab 32000
//                        --heads 32 --kv-heads 4 --models 3 --seed 0 --shard-size 1000000000]
//   benchmark-tool iobound --output FILE --write-bytes N [--outputs K] INPUT_FILE...
//   benchmark-tool evict FILE...   (drops the files from the page cache: Benchmarks/run.sh --cold)
//   benchmark-tool engine [--batch 32 --threads 2 --runs 5 --parallelism images|blas
//                         --hidden 768 --layers 12 --heads 12 --intermediate 3072 --image 224 --patch 32]
//                         (CLIP image-encoder passes on random weights; Benchmarks/engine.sh)
//   benchmark-tool wemoe [--experts 8 --batch 16 --eval-batch 32 --threads 2 --runs 3 --chunk 8 --layers 12 ...]
//                         (a ViT-B/32-shaped WEMoE model: evaluation and training steps; Benchmarks/wemoe.sh)
//   benchmark-tool multitask-data --digits FILE --out DIR [--seed 0 --tasks 8 --train 1000 --val 200 --test 597]
//                         (the task datasets of Benchmarks/multitask.sh; Multitask.swift)
import Dispatch
import Foundation
import MergeKit
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Arguments

// OpenBLAS's kernels as merge-cli gets them (`BLAS.preferredCoreType`): re-executed with
// OPENBLAS_CORETYPE when OpenBLAS fell back to its generic kernels on a faster CPU.
BLAS.reexecutingWithPreferredKernels()
var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else {
    FileHandle.standardError.write(Data("usage: benchmark-tool synth|iobound|evict|engine|wemoe|multitask-data ...\n".utf8))
    exit(64)
}
arguments.removeFirst()

func option(_ name: String, _ defaultValue: Int) -> Int {
    if let i = arguments.firstIndex(of: "--" + name), i + 1 < arguments.count, let v = Int(arguments[i + 1]) { return v }
    return defaultValue
}
func option(_ name: String) -> String? {
    if let i = arguments.firstIndex(of: "--" + name), i + 1 < arguments.count { return arguments[i + 1] }
    return nil
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("benchmark-tool: \(message)\n".utf8))
    exit(1)
}

func pwriteAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, _ offset: Int) {
    var done = 0
    while done < count {
        let n = pwrite(fd, p + done, count - done, off_t(offset + done))
        if n <= 0 { if errno == EINTR { continue }; fail("write failed: \(String(cString: strerror(errno)))") }
        done += n
    }
}

// MARK: - Random numbers

/// SplitMix64-seeded xorshift, with a cheap approximately normal draw (Irwin–Hall, 4 uniforms).
struct Generator {
    var state: UInt64
    init(seed: UInt64) {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        state = (z ^ (z >> 31)) | 1
    }
    @inline(__always) mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    /// ≈ N(0, 1).
    @inline(__always) mutating func normal() -> Float {
        let r = next()
        let a = Float(r & 0xFFFF) + Float((r >> 16) & 0xFFFF) + Float((r >> 32) & 0xFFFF) + Float(r >> 48)
        return (a / 65536 - 2) * 1.7320508
    }
}

func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

@inline(__always) func bf16(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}

// MARK: - synth

func synth() {
    guard let out = option("out") else { fail("synth needs --out DIR") }
    let hidden = option("hidden", 2048), layers = option("layers", 22), intermediate = option("intermediate", 5632)
    let vocab = option("vocab", 32000), heads = option("heads", 32), kvHeads = option("kv-heads", 4)
    let models = option("models", 3), seed = UInt64(option("seed", 0)), shardSize = option("shard-size", 1_000_000_000)
    let kv = hidden / heads * kvHeads

    // Tensor list in the order transformers saves a LlamaForCausalLM.
    var specs: [TensorSpec] = [TensorSpec(name: "model.embed_tokens.weight", dtype: .BF16, shape: [vocab, hidden])]
    for l in 0..<layers {
        let p = "model.layers.\(l)."
        specs += [
            TensorSpec(name: p + "self_attn.q_proj.weight", dtype: .BF16, shape: [hidden, hidden]),
            TensorSpec(name: p + "self_attn.k_proj.weight", dtype: .BF16, shape: [kv, hidden]),
            TensorSpec(name: p + "self_attn.v_proj.weight", dtype: .BF16, shape: [kv, hidden]),
            TensorSpec(name: p + "self_attn.o_proj.weight", dtype: .BF16, shape: [hidden, hidden]),
            TensorSpec(name: p + "mlp.gate_proj.weight", dtype: .BF16, shape: [intermediate, hidden]),
            TensorSpec(name: p + "mlp.up_proj.weight", dtype: .BF16, shape: [intermediate, hidden]),
            TensorSpec(name: p + "mlp.down_proj.weight", dtype: .BF16, shape: [hidden, intermediate]),
            TensorSpec(name: p + "input_layernorm.weight", dtype: .BF16, shape: [hidden]),
            TensorSpec(name: p + "post_attention_layernorm.weight", dtype: .BF16, shape: [hidden]),
        ]
    }
    specs += [TensorSpec(name: "model.norm.weight", dtype: .BF16, shape: [hidden]),
              TensorSpec(name: "lm_head.weight", dtype: .BF16, shape: [vocab, hidden])]

    // Shards of at most shardSize bytes.
    var groups: [[TensorSpec]] = [[]]
    var bytes = 0
    for spec in specs {
        if !groups[groups.count - 1].isEmpty && bytes + spec.byteCount > shardSize { groups.append([]); bytes = 0 }
        groups[groups.count - 1].append(spec)
        bytes += spec.byteCount
    }
    let total = specs.reduce(0) { $0 + $1.elementCount }
    FileHandle.standardError.write(Data("synth: \(total) parameters, \(groups.count) shards per model, \(models + 1) models\n".utf8))

    let config = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(hidden), \
        "intermediate_size": \(intermediate), "num_hidden_layers": \(layers), "num_attention_heads": \(heads), \
        "num_key_value_heads": \(kvHeads), "vocab_size": \(vocab), "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, \
        "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16", "rope_theta": 10000.0}

        """
    for m in 0...models {
        let dir = out + "/" + (m == 0 ? "base" : "ft_\(m)")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/config.json", contents: Data(config.utf8))
        var weightMap: [String] = []
        var jobs: [(path: String, layout: SafeTensorsLayout, index: Int)] = []
        for (s, group) in groups.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", s + 1, groups.count)
            let layout = SafeTensorsLayout(specs: group, metadata: ["format": "pt"])
            jobs.append((dir + "/" + name, layout, s))
            weightMap += group.map { "    \"\($0.name)\": \"\(name)\"" }
        }
        // One job per tensor, all shards, run on every core.
        var tasks: [(fd: Int32, offset: Int, spec: TensorSpec)] = []
        var fds: [Int32] = []
        for job in jobs {
            let fd = open(job.path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { fail("cannot create \(job.path)") }
            fds.append(fd)
            guard ftruncate(fd, off_t(job.layout.fileSize)) == 0 else { fail("cannot size \(job.path)") }
            job.layout.prefix.withUnsafeBytes { pwriteAll(fd, $0.baseAddress!, $0.count, 0) }
            for t in job.layout.tensors {
                tasks.append((fd, job.layout.dataStart + t.begin, TensorSpec(name: t.name, dtype: t.dtype, shape: t.shape)))
            }
        }
        DispatchQueue.concurrentPerform(iterations: tasks.count) { i in
            let task = tasks[i]
            let isNorm = task.spec.name.hasSuffix("norm.weight")
            var base = Generator(seed: seed ^ fnv1a(task.spec.name))
            var delta = Generator(seed: seed ^ fnv1a(task.spec.name) ^ (UInt64(m) &* 0x9E37_79B9_7F4A_7C15))
            let chunk = 1 << 20
            var buffer = [UInt16](repeating: 0, count: chunk)
            var done = 0
            let n = task.spec.elementCount
            while done < n {
                let count = min(chunk, n - done)
                for k in 0..<count {
                    var x = isNorm ? 1 + 0.02 * base.normal() : 0.02 * base.normal()
                    if m > 0 { x += 0.002 * delta.normal() }
                    buffer[k] = bf16(x)
                }
                buffer.withUnsafeBytes { pwriteAll(task.fd, $0.baseAddress!, count * 2, task.offset + done * 2) }
                done += count
            }
        }
        fds.forEach { close($0) }
        let index = "{\n  \"metadata\": {\n    \"total_size\": \(total * 2)\n  },\n  \"weight_map\": {\n"
            + weightMap.sorted().joined(separator: ",\n") + "\n  }\n}\n"
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors.index.json", contents: Data(index.utf8))
        FileHandle.standardError.write(Data("synth: wrote \(dir)\n".utf8))
    }
}

// MARK: - evict

/// Drops every input file's pages from the page cache (posix_fadvise DONTNEED after fdatasync), so
/// the next read of it comes from the disk, and prints how much of each stayed resident (mincore):
/// `evict FILE...` → "resident_bytes=N total_bytes=M". Benchmarks/run.sh --cold runs it before
/// every timed run, for merge-cli and its peer alike.
func evict() {
    let files = arguments.filter { !$0.hasPrefix("--") }
    guard !files.isEmpty else { fail("evict needs the files to evict") }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    var resident = 0, total = 0
    for path in files {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { fail("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { fail("\(path) is not a regular file") }
        _ = fdatasync(fd)
        guard posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0 else { fail("posix_fadvise failed on \(path)") }
        let size = Int(st.st_size)
        total += size
        guard size > 0, let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { continue }
        defer { munmap(map, size) }
        let pages = (size + page - 1) / page
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(map, size, &vector) == 0 else { continue }
        resident += vector.reduce(0) { $0 + Int($1 & 1) } * page
    }
    print("resident_bytes=\(min(resident, total)) total_bytes=\(total)")
}

// MARK: - iobound

/// Reads every input file (all cores, 2 MB preads, as a merge reads) and writes `write-bytes` to
/// each of `outputs` files (2 MB pwrites into a sized file with write-behind, then fsync, as a
/// merge writes; K files one after another for a K-point sweep), printing the seconds each took.
/// Nothing is computed: this is the floor for a merge (or a sweep) of these inputs.
func iobound() {
    guard let output = option("output") else { fail("iobound needs --output FILE") }
    let writeBytes = option("write-bytes", 0)
    let outputs = option("outputs", 1)
    let optionValues = Set(["output", "write-bytes", "outputs", "threads"].compactMap { option($0) })
    let inputs = arguments.filter { !$0.hasPrefix("--") && !optionValues.contains($0) }
    let threads = option("threads", ProcessInfo.processInfo.activeProcessorCount)
    let block = 2 << 20
    // Read: split every file into 2 MB blocks, workers take blocks.
    var blocks: [(String, Int, Int)] = []
    for path in inputs {
        var st = stat()
        guard stat(path, &st) == 0 else { fail("cannot stat \(path)") }
        var offset = 0
        while offset < Int(st.st_size) { blocks.append((path, offset, min(block, Int(st.st_size) - offset))); offset += block }
    }
    let readStart = Date()
    let counter = NSLock()
    var next = 0
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        var fds: [String: Int32] = [:]
        while true {
            counter.lock(); let i = next; next += 1; counter.unlock()
            guard i < blocks.count else { break }
            let (path, offset, count) = blocks[i]
            let fd = fds[path] ?? open(path, O_RDONLY)
            fds[path] = fd
            _ = pread(fd, buffer, count, off_t(offset))
        }
        fds.values.forEach { close($0) }
    }
    let readSeconds = Date().timeIntervalSince(readStart)
    // Write-behind as merge-cli's writer does it: start each block's writeback once written, and
    // wait for and drop blocks written earlier, so the outputs stream to disk through a bounded
    // cache (64 blocks in flight). The K outputs are written interleaved, block by block, as a
    // sweep writes its points.
    typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    let syncFileRange = dlsym(nil, "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }
    let lag = max(1, 64 / outputs)
    let writeStart = Date()
    let paths = (0..<outputs).map { outputs == 1 ? output : output + ".\($0)" }
    let fds: [Int32] = paths.map { path in
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { fail("cannot create \(path)") }
        _ = ftruncate(fd, off_t(writeBytes))
        return fd
    }
    next = 0
    let writeBlocks = (writeBytes + block - 1) / block
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)
        memset(buffer, 0x3C, block)
        defer { buffer.deallocate() }
        while true {
            counter.lock(); let j = next; next += 1; counter.unlock()
            guard j < writeBlocks * outputs else { break }
            let fd = fds[j % outputs], i = j / outputs
            pwriteAll(fd, buffer, min(block, writeBytes - i * block), i * block)
            _ = syncFileRange?(fd, Int64(i * block), Int64(block), 2)
            if i >= lag {
                _ = syncFileRange?(fd, Int64((i - lag) * block), Int64(block), 7)
                _ = posix_fadvise(fd, off_t((i - lag) * block), off_t(block), POSIX_FADV_DONTNEED)
            }
        }
    }
    for fd in fds {
        fsync(fd)
        close(fd)
    }
    let writeSeconds = Date().timeIntervalSince(writeStart)
    paths.forEach { unlink($0) }
    print(String(format: "read_seconds=%.3f write_seconds=%.3f total_seconds=%.3f", readSeconds, writeSeconds, readSeconds + writeSeconds))
}

// MARK: - engine

/// Times the CLIP engine's forward pass, JVP (primal + tangent along a full random direction) and
/// one training step (forward keeping activations + backward of the softmax entropy through a
/// 10-class head, parameter gradients only) on random weights generated here, ViT-B/32-shaped by
/// default. Prints one `key=value` line per pass: the best of --runs after one warm-up run.
func engine() {
    let batch = option("batch", 32), threads = option("threads", 2), runs = option("runs", 5)
    let config = CLIPVisionConfig(hiddenSize: option("hidden", 768), intermediateSize: option("intermediate", 3072),
                                  numHiddenLayers: option("layers", 12), numAttentionHeads: option("heads", 12),
                                  imageSize: option("image", 224), patchSize: option("patch", 32),
                                  projectionDim: option("projection", 512))
    var random = Generator(seed: 7)
    func randomParameters(scale: Float) -> CLIPVisionParameters {
        let p = CLIPVisionParameters(config: config)
        for t in p.tensors {
            let isNormWeight = (t.name.contains("layer_norm") || t.name.contains("layrnorm") || t.name.contains("layernorm"))
                && t.name.hasSuffix("weight")
            p.setValues((0..<t.count).map { _ in (isNormWeight ? 1 : 0) + scale * random.normal() }, of: t.name)
        }
        return p
    }
    let model = CLIPVisionModel(parameters: randomParameters(scale: 0.02), threads: threads)
    if let mode = option("parallelism") {
        guard let parsed = EngineParallelism(rawValue: mode) else { fail("--parallelism is images or blas") }
        model.parallelism = parsed
    }
    let direction = randomParameters(scale: 0.001)
    let pixels = (0..<(batch * config.pixelsPerImage)).map { _ in random.normal() }
    let head = TaskHead(weight: (0..<(10 * model.embeddingSize)).map { _ in random.normal() }, classes: 10,
                        dimension: model.embeddingSize)
    var cpu: [String: Double] = [:]
    func best(_ name: String, _ body: () -> Void) -> Double {
        body()
        var result = Double.infinity, cpuResult = Double.infinity
        for _ in 0..<max(1, runs) {
            let start = Date(), cpuStart = cpuSeconds()
            body()
            result = min(result, Date().timeIntervalSince(start))
            cpuResult = min(cpuResult, cpuSeconds() - cpuStart)
        }
        cpu[name] = cpuResult
        return result
    }
    var sink: Float = 0
    let forward = best("forward") { sink += model.forward(pixels: pixels, batch: batch)[0] }
    let jvp = best("jvp") { sink += model.jvp(pixels: pixels, batch: batch, direction: direction).tangent[0] }
    let step = best("step") {
        sink += model.lossGradients(pixels: pixels, batch: batch, head: head, loss: .entropy, inputGradient: false).logits[0]
    }
    print(String(format: "engine batch=%d threads=%d parallelism=%@ parameters=%d", batch, threads,
                 model.parallelism.rawValue, model.parameters.count))
    print(String(format: "forward_seconds=%.4f forward_images_per_second=%.2f", forward, Double(batch) / forward))
    print(String(format: "jvp_seconds=%.4f jvp_images_per_second=%.2f jvp_over_forward=%.2f", jvp, Double(batch) / jvp, jvp / forward))
    print(String(format: "step_seconds=%.4f step_over_forward=%.2f backward_seconds=%.4f backward_over_forward=%.2f",
                 step, step / forward, step - forward, (step - forward) / forward))
    let f = cpu["forward"]!, j = cpu["jvp"]!, st = cpu["step"]!
    print(String(format: "cpu_seconds forward=%.3f jvp=%.3f step=%.3f jvp_over_forward=%.2f step_over_forward=%.2f backward_over_forward=%.2f",
                 f, j, st, j / f, st / f, (st - f) / f))
    print(String(format: "peak_rss_mb=%.0f", Double(ProcessMemory.peakResidentBytes) / 1e6))
    if !sink.isFinite { print("note: non-finite output") }
}

/// CPU seconds of the whole process (every thread): steadier than wall time on a shared machine.
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

// MARK: - wemoe

/// Times a WEMoE model upscaled from random ViT-B/32-shaped encoders (base + --experts perturbed
/// copies): evaluation with per-image routing (seconds per image over --eval-batch images) and one
/// test-time-adaptation step on one task's batch (--batch images, batch-averaged routing: forward
/// keeping activations + backward to the routers). Best of --runs after a warm-up (the step: also the median, and CPU seconds).
func wemoeBenchmark() {
    let experts = option("experts", 8), batch = option("batch", 16), evalBatch = option("eval-batch", 32)
    let threads = option("threads", 2), runs = option("runs", 3)
    let config = CLIPVisionConfig(hiddenSize: option("hidden", 768), intermediateSize: option("intermediate", 3072),
                                  numHiddenLayers: option("layers", 12), numAttentionHeads: option("heads", 12),
                                  imageSize: option("image", 224), patchSize: option("patch", 32),
                                  projectionDim: option("projection", 512))
    var random = Generator(seed: 11)
    func randomParameters(scale: Float, norms: Bool) -> CLIPVisionParameters {
        let p = CLIPVisionParameters(config: config)
        for t in p.tensors {
            let isNormWeight = norms && (t.name.contains("layer_norm") || t.name.contains("layrnorm") || t.name.contains("layernorm"))
                && t.name.hasSuffix("weight")
            p.setValues((0..<t.count).map { _ in (isNormWeight ? 1 : 0) + scale * random.normal() }, of: t.name)
        }
        return p
    }
    let base = randomParameters(scale: 0.02, norms: true)
    let setupStart = Date()
    let parameters: WEMoEParameters
    do {
        parameters = try WEMoEParameters.upscale(base: base, experts: experts, names: (0..<experts).map { "expert\($0)" }) { _ in
            let expert = base.copy()
            expert.add(randomParameters(scale: 0.002, norms: false))
            return expert
        }
    } catch {
        fail("\(error)")
    }
    let setup = Date().timeIntervalSince(setupStart)
    let model = WEMoEModel(parameters: parameters, threads: threads)
    model.mixingChunk = option("chunk", 8)
    let pixels = (0..<(max(batch, evalBatch) * config.pixelsPerImage)).map { _ in random.normal() }
    let head = TaskHead(weight: (0..<(10 * model.embeddingSize)).map { _ in random.normal() }, classes: 10, dimension: model.embeddingSize)
    /// Best and median wall seconds and best CPU seconds (every thread) of `runs` runs after a warm-up.
    func measure(_ body: () -> Void) -> (best: Double, median: Double, cpu: Double) {
        body()
        var walls: [Double] = [], cpu = Double.infinity
        for _ in 0..<max(1, runs) {
            let start = Date(), cpuStart = cpuSeconds()
            body()
            walls.append(Date().timeIntervalSince(start))
            cpu = min(cpu, cpuSeconds() - cpuStart)
        }
        walls.sort()
        return (walls[0], walls[walls.count / 2], cpu)
    }
    var sink: Float = 0
    let evalPixels = Array(pixels[0..<(evalBatch * config.pixelsPerImage)]), stepPixels = Array(pixels[0..<(batch * config.pixelsPerImage)])
    let evalRuns = measure { sink += model.forward(pixels: evalPixels, batch: evalBatch)[0] }
    let stepRuns = measure {
        sink += model.lossGradients(pixels: stepPixels, batch: batch, head: head, loss: .entropy, batchReduce: true).gradient[0]
    }
    let eval = evalRuns.best, step = stepRuns.best
    print(String(format: "wemoe experts=%d threads=%d chunk=%d router_parameters=%d upscale_seconds=%.1f", experts, threads,
                 model.mixingChunk, parameters.routerValues.count, setup))
    print(String(format: "eval_batch=%d eval_seconds=%.3f eval_seconds_per_image=%.4f eval_images_per_second=%.2f",
                 evalBatch, eval, eval / Double(evalBatch), Double(evalBatch) / eval))
    print(String(format: "step_batch=%d step_seconds=%.3f step_median_seconds=%.3f step_cpu_seconds=%.3f",
                 batch, step, stepRuns.median, stepRuns.cpu))
    print(String(format: "peak_rss_mb=%.0f", Double(ProcessMemory.peakResidentBytes) / 1e6))
    if !sink.isFinite { print("note: non-finite output") }
}

switch command {
case "synth": synth()
case "iobound": iobound()
case "evict": evict()
case "engine": engine()
case "wemoe": wemoeBenchmark()
case "multitask-data": multitaskData()
default: fail("unknown command \(command)")
}

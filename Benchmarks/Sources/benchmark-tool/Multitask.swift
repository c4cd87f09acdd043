// benchmark-tool multitask-data: the task datasets of the multi-task benchmark (Benchmarks/multitask.sh),
// made from the real handwritten digits in Fixtures/multitask/digits.safetensors (scikit-learn's
// bundled `digits`, exported once by Fixtures/multitask/make_digits.py).
//
//   benchmark-tool multitask-data --digits FILE --out DIR [--seed 0] [--tasks 8|NAME,NAME…] [--train 1000 --val 200 --test 597]
//
// The 1797 images are shuffled by --seed and split once into train, validation and test images;
// every task transforms the same split, so no test image (in any form) is seen in training or
// validation. Each task is an image transformation and a label map:
//
//   digits    as they are, white on black                          the digit            10 classes
//   mirror    mirrored left–right, green                           the digit            10
//   rotate    rotated 90° counter-clockwise, blue                  the digit            10
//   negative  dark ink on white                                    the digit            10
//   parity    upside down (rotated 180°), yellow                   odd or even          2
//   loops     red                                                  closed loops 0/1/2   3
//   noisy     Gaussian noise σ = 0.25 (of the [0, 1] range), magenta  digit ≥ 5         2
//   shifted   moved one pixel in a random direction, cyan          digit mod 3          3
//
// and the pretext task the encoder is pretrained on (self-supervised: no task labels): every task's
// training images, each under one of the 8 symmetries of the square (4 rotations × mirrored or not)
// drawn at random, labelled with (task style, symmetry) — 8 × tasks classes: which kind of image,
// which way round.
//
// Pixels become background + (ink − background)·x/16 per channel in [0, 1] (each task draws in its
// own colours, as real datasets differ in colour statistics), then are normalised with CLIP's mean
// and std, as CLIPImageProcessor does. Random transformations (noise, shifts) draw from
// a stream fixed by --seed, the task and the image. Writes DIR/tasks.tsv (name, classes,
// description), DIR/pretext/train.safetensors and DIR/<task>/{train,val,test}.safetensors
// (`pixel_values` [N, 3, 8, 8] F32, `labels` [N] I64).
import Foundation
import MergeKit

/// One task of the benchmark: how an 8×8 image (values 0…16, row-major) is transformed, its
/// colours, and its label.
struct DigitTask {
    let name: String
    let classes: Int
    let description: String
    /// The colour of the ink (value 16) and of the background (value 0), RGB in [0, 1].
    var ink: [Float] = [1, 1, 1]
    var background: [Float] = [0, 0, 0]
    /// The image transformed (values stay in 0…16, or beyond for noise), from the stream `random`.
    let transform: ([Float], inout Generator) -> [Float]
    let label: (Int) -> Int
}

/// Pixel (r, c) of the image rotated by `quarterTurns` × 90° counter-clockwise and then mirrored.
func symmetric(_ image: [Float], quarterTurns: Int, mirrored: Bool) -> [Float] {
    var out = [Float](repeating: 0, count: 64)
    for r in 0..<8 {
        for c in 0..<8 {
            let cc = mirrored ? 7 - c : c
            // The source pixel of (r, cc) in the rotated image.
            let (sr, sc): (Int, Int)
            switch quarterTurns % 4 {
            case 1: (sr, sc) = (cc, 7 - r)
            case 2: (sr, sc) = (7 - r, 7 - cc)
            case 3: (sr, sc) = (7 - cc, r)
            default: (sr, sc) = (r, cc)
            }
            out[r * 8 + c] = image[sr * 8 + sc]
        }
    }
    return out
}

let digitTasks: [DigitTask] = [
    DigitTask(name: "digits", classes: 10, description: "as they are; the digit", transform: { image, _ in image }, label: { $0 }),
    DigitTask(name: "mirror", classes: 10, description: "mirrored left-right, green; the digit", ink: [0, 1, 0],
              transform: { image, _ in symmetric(image, quarterTurns: 0, mirrored: true) }, label: { $0 }),
    DigitTask(name: "rotate", classes: 10, description: "rotated 90 degrees, blue; the digit", ink: [0.2, 0.4, 1],
              transform: { image, _ in symmetric(image, quarterTurns: 1, mirrored: false) }, label: { $0 }),
    DigitTask(name: "negative", classes: 10, description: "dark ink on white; the digit", ink: [0, 0, 0], background: [1, 1, 1],
              transform: { image, _ in image }, label: { $0 }),
    DigitTask(name: "parity", classes: 2, description: "upside down, yellow; odd or even", ink: [1, 1, 0],
              transform: { image, _ in symmetric(image, quarterTurns: 2, mirrored: false) }, label: { $0 % 2 }),
    DigitTask(name: "loops", classes: 3, description: "red ink; closed loops (0, 1 or 2)", ink: [1, 0, 0],
              transform: { image, _ in image }, label: { [1, 0, 0, 0, 1, 0, 1, 0, 2, 1][$0] }),
    DigitTask(name: "noisy", classes: 2, description: "Gaussian noise (sigma 0.25), magenta; digit >= 5", ink: [1, 0, 1],
              transform: { image, random in image.map { $0 + 4 * random.normal() } }, label: { $0 >= 5 ? 1 : 0 }),
    DigitTask(name: "shifted", classes: 3, description: "moved one pixel in a random direction, cyan; digit mod 3", ink: [0, 1, 1],
              transform: { image, random in
                  let directions = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
                  let (dr, dc) = directions[Int(random.next() % 8)]
                  var out = [Float](repeating: 0, count: 64)
                  for r in 0..<8 {
                      for c in 0..<8 where (0..<8).contains(r - dr) && (0..<8).contains(c - dc) {
                          out[r * 8 + c] = image[(r - dr) * 8 + (c - dc)]
                      }
                  }
                  return out
              }, label: { $0 % 3 }),
]

/// CLIP's per-channel normalisation (CLIPImageProcessor's image_mean and image_std).
let clipMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
let clipStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

/// An 8×8 image of counts 0…16 as CLIP pixel values [3, 8, 8]: per channel, background + (ink −
/// background)·x/16, normalised.
func clipPixels(_ image: [Float], ink: [Float], background: [Float] = [0, 0, 0]) -> [Float] {
    var out = [Float](repeating: 0, count: 3 * 64)
    for channel in 0..<3 {
        let (b, range) = (background[channel], ink[channel] - background[channel])
        for i in 0..<64 { out[channel * 64 + i] = (b + range * image[i] / 16 - clipMean[channel]) / clipStd[channel] }
    }
    return out
}

/// Writes `pixel_values` [N, 3, 8, 8] F32 and `labels` [N] I64 to `path`.
func writeImageSet(_ path: String, pixels: [Float], labels: [Int], metadata: [String: String]) {
    let n = labels.count
    precondition(pixels.count == n * 3 * 64)
    let layout = SafeTensorsLayout(specs: [TensorSpec(name: "pixel_values", dtype: .F32, shape: [n, 3, 8, 8]),
                                           TensorSpec(name: "labels", dtype: .I64, shape: [n])],
                                   metadata: metadata.merging(["format": "pt"]) { old, _ in old })
    var bytes = Data(layout.prefix)
    for info in layout.tensors {
        if info.name == "pixel_values" {
            pixels.withUnsafeBytes { bytes.append(contentsOf: $0) }
        } else {
            labels.map { Int64($0).littleEndian }.withUnsafeBytes { bytes.append(contentsOf: $0) }
        }
    }
    guard FileManager.default.createFile(atPath: path, contents: bytes) else { fail("cannot write \(path)") }
}

func multitaskData() {
    guard let digitsPath = option("digits"), let out = option("out") else { fail("multitask-data needs --digits FILE and --out DIR") }
    let seed = UInt64(option("seed", 0))
    // --tasks N (the first N) or a comma list of names.
    let chosen: [DigitTask]
    let spec = option("tasks") ?? String(digitTasks.count)
    if let n = Int(spec) {
        guard (1...digitTasks.count).contains(n) else { fail("--tasks must be 1…\(digitTasks.count) or a list of names") }
        chosen = Array(digitTasks.prefix(n))
    } else {
        chosen = spec.split(separator: ",").map { name in
            guard let task = digitTasks.first(where: { $0.name == name }) else {
                fail("unknown task \(name) (one of \(digitTasks.map(\.name).joined(separator: ", ")))")
            }
            return task
        }
    }
    let taskCount = chosen.count
    let file: SafeTensorsFile
    do { file = try SafeTensorsFile(path: digitsPath) } catch { fail("\(error)") }
    guard let imagesInfo = file.tensor(named: "images"), imagesInfo.dtype == .U8, imagesInfo.shape.count == 3,
          imagesInfo.shape[1] == 8, imagesInfo.shape[2] == 8, let labelsInfo = file.tensor(named: "labels"), labelsInfo.dtype == .U8,
          labelsInfo.shape == [imagesInfo.shape[0]] else {
        fail("\(digitsPath) must hold images U8 [N, 8, 8] and labels U8 [N] (Fixtures/multitask/make_digits.py writes it)")
    }
    let count = imagesInfo.shape[0]
    let train = option("train", 1000), val = option("val", 200), test = option("test", count - 1200)
    guard train > 0, val > 0, test > 0, train + val + test <= count else {
        fail("--train, --val and --test must be > 0 and add up to at most \(count)")
    }
    let imageBytes = file.bytes(of: imagesInfo), labelBytes = file.bytes(of: labelsInfo)
    let images = (0..<count).map { i in (0..<64).map { Float(imageBytes[i * 64 + $0]) } }
    let digits = (0..<count).map { Int(labelBytes[$0]) }

    // One shuffle (Fisher–Yates on the seed's stream) cut into the three splits.
    var order = Array(0..<count)
    var shuffle = Generator(seed: seed ^ 0x5EED_5EED)
    for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, Int(shuffle.next() % UInt64(i + 1))) }
    let splits = [("train", Array(order[0..<train])), ("val", Array(order[train..<(train + val)])),
                  ("test", Array(order[(train + val)..<(train + val + test)]))]

    let source = ["source": "Fixtures/multitask/digits.safetensors", "seed": String(seed)]
    var table = "# name\tclasses\tdescription\n"
    for task in chosen {
        let dir = out + "/" + task.name
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (split, indices) in splits {
            var pixels: [Float] = []
            pixels.reserveCapacity(indices.count * 192)
            for i in indices {
                var random = Generator(seed: seed ^ fnv1a(task.name) ^ (UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15))
                pixels += clipPixels(task.transform(images[i], &random), ink: task.ink, background: task.background)
            }
            writeImageSet(dir + "/\(split).safetensors", pixels: pixels, labels: indices.map { task.label(digits[$0]) },
                          metadata: source.merging(["task": task.name, "split": split]) { old, _ in old })
        }
        table += "\(task.name)\t\(task.classes)\t\(task.description)\n"
    }
    // The pretext (no task labels): every task's training images, each under one of the 8 symmetries
    // of the square drawn at random, labelled with (task style, symmetry): 8 × tasks classes.
    try? FileManager.default.createDirectory(atPath: out + "/pretext", withIntermediateDirectories: true)
    var pixels: [Float] = [], labels: [Int] = []
    for (t, task) in chosen.enumerated() {
        for i in splits[0].1 {
            var random = Generator(seed: seed ^ fnv1a(task.name) ^ (UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15))
            let image = task.transform(images[i], &random)  // the same draw as the task's own training image
            let symmetry = Int(random.next() % 8)
            pixels += clipPixels(symmetric(image, quarterTurns: symmetry % 4, mirrored: symmetry >= 4), ink: task.ink,
                                 background: task.background)
            labels.append(t * 8 + symmetry)
        }
    }
    // Shuffled (the trainer draws batches from per-epoch shuffles anyway; this keeps the file's order neutral).
    var mixed = Array(labels.indices)
    for i in stride(from: mixed.count - 1, to: 0, by: -1) { mixed.swapAt(i, Int(shuffle.next() % UInt64(i + 1))) }
    writeImageSet(out + "/pretext/train.safetensors", pixels: mixed.flatMap { pixels[($0 * 192)..<($0 * 192 + 192)] },
                  labels: mixed.map { labels[$0] }, metadata: source.merging(["task": "pretext", "split": "train"]) { old, _ in old })
    guard FileManager.default.createFile(atPath: out + "/tasks.tsv", contents: Data(table.utf8)) else { fail("cannot write \(out)/tasks.tsv") }
    FileHandle.standardError.write(Data("multitask-data: \(taskCount) tasks × \(train)/\(val)/\(test) images, pretext \(labels.count) images in \(out)\n".utf8))
}

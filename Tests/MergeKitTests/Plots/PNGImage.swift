import Foundation
@testable import MergeKit

/// A decoded PNG (8-bit RGB or RGBA, not interlaced — what rsvg-convert writes), composited on
/// white, and the comparison the rendering tests make between two of them.
struct PNGImage {
    let width: Int
    let height: Int
    /// RGB, row-major, 3 bytes a pixel, alpha already composited on white.
    let rgb: [UInt8]

    struct DecodeError: Error, CustomStringConvertible {
        let description: String
    }

    init(width: Int, height: Int, rgb: [UInt8]) {
        self.width = width
        self.height = height
        self.rgb = rgb
    }

    init(file: String) throws {
        try self.init(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: file))))
    }

    init(bytes: [UInt8]) throws {
        func fail(_ why: String) -> DecodeError { DecodeError(description: "not a PNG this decoder reads: \(why)") }
        func u32(_ at: Int) -> Int { Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3]) }
        guard bytes.starts(with: PlotFile.pngSignature) else { throw fail("no signature") }
        var cursor = 8
        var width = 0, height = 0, channels = 0
        var compressed: [UInt8] = []
        while cursor + 12 <= bytes.count {
            let length = u32(cursor)
            let type = String(decoding: bytes[cursor + 4..<cursor + 8], as: UTF8.self)
            guard length <= bytes.count - cursor - 12 else { throw fail("chunk \(type) runs past the end") }
            let data = Array(bytes[cursor + 8..<cursor + 8 + length])
            let crc = UInt32(u32(cursor + 8 + length))
            guard UInt32(Data(bytes[cursor + 4..<cursor + 8 + length]).crc32(checksum: 0)) == crc else { throw fail("chunk \(type) fails its CRC") }
            switch type {
            case "IHDR":
                guard length == 13 else { throw fail("IHDR of \(length) bytes") }
                width = Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3])
                height = Int(data[4]) << 24 | Int(data[5]) << 16 | Int(data[6]) << 8 | Int(data[7])
                guard data[8] == 8, data[10] == 0, data[11] == 0, data[12] == 0 else { throw fail("not 8-bit, or interlaced") }
                switch data[9] {
                case 2: channels = 3
                case 6: channels = 4
                default: throw fail("colour type \(data[9])")
                }
                guard (1...8192).contains(width), (1...8192).contains(height) else { throw fail("\(width) × \(height) pixels") }
            case "IDAT":
                compressed += data
            case "IEND":
                cursor = bytes.count
                continue
            default:
                break
            }
            cursor += 12 + length
        }
        guard channels > 0, compressed.count > 6 else { throw fail("no header or no image data") }
        let stride = width * channels
        // A zlib stream: 2 header bytes, raw deflate, the Adler-32.
        let raw = try compressed.withUnsafeBytes { buffer in
            do throws(ZipArchive.InflateFailure) {
                return try ZipArchive.inflate(UnsafeRawBufferPointer(rebasing: buffer[2...]), bound: (stride + 1) * height)
            } catch {
                throw fail("image data \(error.reason)")
            }
        }
        guard raw.count == (stride + 1) * height else { throw fail("\(raw.count) bytes of image data for \(width) × \(height)") }
        var pixels = [UInt8](repeating: 0, count: stride * height)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            let source = y * (stride + 1) + 1, row = y * stride
            for i in 0..<stride {
                let a = i >= channels ? Int(pixels[row + i - channels]) : 0
                let b = y > 0 ? Int(pixels[row - stride + i]) : 0
                let c = i >= channels && y > 0 ? Int(pixels[row - stride + i - channels]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = b
                case 3: predictor = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
                default: throw fail("row filter \(filter)")
                }
                pixels[row + i] = UInt8((Int(raw[source + i]) + predictor) & 0xFF)
            }
        }
        var rgb = [UInt8](repeating: 255, count: width * height * 3)
        for p in 0..<width * height {
            let alpha = channels == 4 ? Int(pixels[p * 4 + 3]) : 255
            for k in 0..<3 {
                let v = Int(pixels[p * channels + k])
                // rsvg-convert writes straight (not premultiplied) alpha.
                rgb[p * 3 + k] = UInt8((v * alpha + 255 * (255 - alpha) + 127) / 255)
            }
        }
        self.init(width: width, height: height, rgb: rgb)
    }

    /// How far `other` is from this image, allowing every feature to move by up to `shift`
    /// pixels (the glyphs of another build of a font, antialiasing): each pixel's difference is
    /// the smallest over the other image's (2·shift+1)² neighbourhood (largest channel
    /// difference), taken both ways and the larger kept.
    struct Difference: CustomStringConvertible {
        /// The mean of the per-pixel differences, 0–255.
        let mean: Double
        /// The share of pixels differing by more than `threshold`.
        let changedShare: Double
        let threshold: Int

        var description: String {
            String(format: "mean difference %.3f, %.3f %% of pixels differ by more than %d", mean, 100 * changedShare, threshold)
        }
    }

    func difference(from other: PNGImage, shift: Int = 2, threshold: Int = 64) -> Difference? {
        guard width == other.width, height == other.height else { return nil }
        let a = nearest(in: other, shift: shift), b = other.nearest(in: self, shift: shift)
        var sum = 0, changed = 0
        for p in 0..<width * height {
            let d = max(a[p], b[p])
            sum += d
            if d > threshold { changed += 1 }
        }
        let count = Double(width * height)
        return Difference(mean: Double(sum) / count, changedShare: Double(changed) / count, threshold: threshold)
    }

    /// For each pixel, the smallest largest-channel difference to a pixel of `other` within `shift`.
    private func nearest(in other: PNGImage, shift: Int) -> [Int] {
        var result = [Int](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let p = (y * width + x) * 3
                var best = Int.max
                for dy in -shift...shift where y + dy >= 0 && y + dy < height {
                    for dx in -shift...shift where x + dx >= 0 && x + dx < width {
                        let q = ((y + dy) * width + x + dx) * 3
                        let d = max(abs(Int(rgb[p]) - Int(other.rgb[q])), abs(Int(rgb[p + 1]) - Int(other.rgb[q + 1])),
                                    abs(Int(rgb[p + 2]) - Int(other.rgb[q + 2])))
                        best = min(best, d)
                        if best == 0 { break }
                    }
                    if best == 0 { break }
                }
                result[y * width + x] = best
            }
        }
        return result
    }
}

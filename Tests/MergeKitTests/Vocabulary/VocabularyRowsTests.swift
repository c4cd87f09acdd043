import Foundation
import Testing
@testable import MergeKit

@Suite("VocabularyRows: a vocabulary tensor read in another vocabulary's row order")
struct VocabularyRowsTests {
    /// Every byte range of a presented tensor reads what a stored tensor of those rows would hold:
    /// own rows (runs and single rows, out of order), zero rows, a row of a tensor of another
    /// dtype (rounded once), the mean of two models' rows, and padding rows holding the mean of
    /// the presented vocabulary rows.
    @Test("Own rows, fills of every kind and padding, read through TensorReader at every byte range")
    func everyRange() throws {
        let dir = TestSupport.temporaryDirectory("vocabulary-rows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let own = (0..<15).map { Double($0) * 0.25 - 1.5 }          // 5 rows of 3, BF16-exact
        let other = (0..<12).map { 1 / Double($0 + 3) }             // 4 rows of 3, F32
        TestSupport.writeCheckpoint(dir + "/own.safetensors", [(TensorSpec(name: "e", dtype: .BF16, shape: [5, 3]), own)])
        TestSupport.writeCheckpoint(dir + "/other.safetensors", [(TensorSpec(name: "e", dtype: .F32, shape: [4, 3]), other)])
        let ownEntry = try #require(try Checkpoint(path: dir + "/own.safetensors").entry(named: "e"))
        let otherEntry = try #require(try Checkpoint(path: dir + "/other.safetensors").entry(named: "e"))
        let stored = TestSupport.values(try Checkpoint(path: dir + "/other.safetensors"))["e"]!.values
        let fills = VocabularyFills(sources: [ownEntry, otherEntry], fills: [
            .zero, .row(source: 1, row: 2), .mean([VocabularyFills.Row(source: 0, row: 1), VocabularyFills.Row(source: 1, row: 3)]),
            .row(source: 0, row: 4),
        ])
        // Output rows: own 3, own 4, zero, other's row 2, own 0, own 1, mean, own row 4 as a fill; then 2 padding rows.
        let rows = VocabularyRows(own: ownEntry, fills: fills, rows: [3, 4, -1, -2, 0, 1, -3, -4], rowCount: 10)
        let entry = rows.entry(named: "model.embed_tokens.weight")
        #expect(entry.info.shape == [10, 3] && entry.info.dtype == .BF16 && entry.info.byteCount == 60)

        func row(_ values: [Double], _ i: Int) -> [Double] { Array(values[(3 * i)..<(3 * i + 3)]) }
        var expected: [Double] = row(own, 3) + row(own, 4) + [0, 0, 0] + row(stored, 2) + row(own, 0) + row(own, 1)
            + zip(row(own, 1), row(stored, 3)).map { ($0 + $1) / 2 } + row(own, 4)
        // Rounded to BF16 as stored, then the padding: the mean of the 8 rows as stored.
        var bytes = [UInt8](repeating: 0, count: 48)
        bytes.withUnsafeMutableBytes { raw in expected.withUnsafeBufferPointer { Double.store($0.baseAddress!, count: 24, as: .BF16, into: raw.baseAddress!) } }
        bytes.withUnsafeBytes { raw in expected.withUnsafeMutableBufferPointer { Double.load(raw.baseAddress!, dtype: .BF16, count: 24, into: $0.baseAddress!) } }
        let mean = (0..<3).map { c in (0..<8).reduce(0.0) { $0 + expected[3 * $1 + c] } / 8 }
        expected += mean + mean
        var all = [UInt8](repeating: 0, count: 60)
        all.withUnsafeMutableBytes { raw in expected.withUnsafeBufferPointer { Double.store($0.baseAddress!, count: 30, as: .BF16, into: raw.baseAddress!) } }

        let reader = TensorReader(entry)
        for lower in 0...60 {
            for upper in lower...60 {
                var buffer = [UInt8](repeating: 0xAA, count: upper - lower)
                try buffer.withUnsafeMutableBytes { raw in
                    if let address = raw.baseAddress { try reader.read(bytes: lower..<upper, into: address) }
                }
                #expect(buffer == Array(all[lower..<upper]), "bytes \(lower)..<\(upper)")
            }
        }
        // A renamed view keeps the map.
        var whole = [UInt8](repeating: 0, count: 60)
        try whole.withUnsafeMutableBytes { try TensorReader(entry.renamed("lm_head.weight")).read(elements: 0..<30, into: $0.baseAddress!) }
        #expect(whole == all)
    }
}

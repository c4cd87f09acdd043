import Foundation

/// One partition's file for one round of a partitioned merge's whole-model statistics
/// (`PartitionStatistics`): the state every partition started the round from (the earlier rounds
/// combined, the same in every file of a round) and this partition's exact counts in it.
///
/// JSON, small: per input at most one 65,536-bin histogram (written as base64 of LEB128 pairs
/// (zero bins skipped, count), so a sparse first-digit histogram takes a few KB and a dense one
/// ~3 bytes a bin), and Σ τ² per work item of a million elements as 8 bytes (base64); Doubles
/// are written by their bits, so nothing is rounded on the way.
struct StatisticsPart: Equatable {
    static let format = "mergekit-statistics"
    static let version = 1
    /// The largest statistics file read (a part holds a few hundred KB per input at most).
    static let sizeLimit = 256 << 20

    var fingerprint: String
    var partition: Partition
    /// This round (from 1) and how many the statistics take.
    var round: Int
    var rounds: Int
    var state: PartitionStatistics.State
    var counts: Counts

    /// A partition's counts in one round.
    struct Counts: Equatable {
        /// Per group, per input: the histogram of the next 16 bits of the magnitude keys under
        /// the group's selection prefix (nil: no selection this round).
        var histograms: [[[Int]]?]
        /// Per group: Σ τ² of every work item this partition visited (the norms round).
        var itemNorms: [ItemNorms?]
        /// Per plan with a mass vote (by plan index): Σ sign(vote) over this partition's elements.
        var votes: [Int: Int]?
    }

    /// Σ τ² per input of work items, by their index among all merged work items.
    struct ItemNorms: Equatable {
        /// How many work items the whole model has.
        var total: Int
        var items: [Int]
        /// Per item, per input.
        var values: [[Double]]
    }

    // MARK: JSON

    var json: JSONValue {
        var members = [
            JSONMember("format", .string(Self.format)),
            JSONMember("version", .int(Self.version)),
            JSONMember("fingerprint", .string(fingerprint)),
            JSONMember("partition", .int(partition.index)),
            JSONMember("partitions", .int(partition.count)),
            JSONMember("round", .int(round)),
            JSONMember("rounds", .int(rounds)),
            // Whether this round's files of every partition, combined, are the complete statistics.
            JSONMember("complete", .bool(round == rounds)),
            JSONMember("state", state.json),
        ]
        members.append(JSONMember("histograms", .array(counts.histograms.map { group in
            group.map { .array($0.map { .string(Self.encode(histogram: $0)) }) } ?? .null
        })))
        members.append(JSONMember("item_norms", .array(counts.itemNorms.map { norms in
            guard let norms else { return .null }
            return .object([
                JSONMember("total", .int(norms.total)),
                JSONMember("items", .string(Self.encode(integers: norms.items))),
                JSONMember("values", .string(Self.encode(doubles: norms.values.flatMap { $0 }))),
            ])
        })))
        members.append(JSONMember("votes", counts.votes.map { votes in
            .array(votes.keys.sorted().map { .array([.int($0), .int(votes[$0]!)]) })
        } ?? .null))
        return .object(members)
    }

    /// Parses a part; nil when it is not one (of this version) or is inconsistent in itself.
    init?(_ json: JSONValue) {
        guard json["format"]?.stringValue == Self.format, json["version"]?.nonNegativeInt == Self.version,
              let fingerprint = json["fingerprint"]?.stringValue,
              let index = json["partition"]?.nonNegativeInt, let count = json["partitions"]?.nonNegativeInt,
              let partition = try? Partition(index: index, count: count),
              let round = json["round"]?.nonNegativeInt, let rounds = json["rounds"]?.nonNegativeInt, round >= 1, round <= rounds,
              rounds <= PartitionStatistics.maximumRounds,
              let stateJSON = json["state"], let state = PartitionStatistics.State(stateJSON),
              let histograms = json["histograms"]?.arrayValue, histograms.count == state.groups.count,
              let itemNorms = json["item_norms"]?.arrayValue, itemNorms.count == state.groups.count,
              let votes = json["votes"] else { return nil }
        var counts = Counts(histograms: [], itemNorms: [], votes: nil)
        for (g, group) in histograms.enumerated() {
            if group == .null {
                counts.histograms.append(nil)
                continue
            }
            let inputs = state.groups[g].selections?.count ?? 0
            guard let entries = group.arrayValue, entries.count == inputs, inputs > 0 else { return nil }
            var decoded: [[Int]] = []
            for entry in entries {
                guard let text = entry.stringValue, let histogram = Self.decode(histogram: text) else { return nil }
                decoded.append(histogram)
            }
            counts.histograms.append(decoded)
        }
        for (g, entry) in itemNorms.enumerated() {
            if entry == .null {
                counts.itemNorms.append(nil)
                continue
            }
            let inputs = state.groups[g].inputs
            guard let total = entry["total"]?.nonNegativeInt, let itemsText = entry["items"]?.stringValue,
                  let valuesText = entry["values"]?.stringValue, let items = Self.decode(integers: itemsText),
                  let flat = Self.decode(doubles: valuesText), inputs > 0, flat.count == items.count * inputs,
                  items.allSatisfy({ $0 < total }) else { return nil }
            let values = items.indices.map { Array(flat[($0 * inputs)..<(($0 + 1) * inputs)]) }
            counts.itemNorms.append(ItemNorms(total: total, items: items, values: values))
        }
        if votes != .null {
            guard let pairs = votes.arrayValue else { return nil }
            var table: [Int: Int] = [:]
            for pair in pairs {
                guard let values = pair.arrayValue, values.count == 2, let plan = values[0].nonNegativeInt,
                      case .number(let text) = values[1], let count = Int(text), table[plan] == nil else { return nil }
                table[plan] = count
            }
            counts.votes = table
        }
        self.init(fingerprint: fingerprint, partition: partition, round: round, rounds: rounds, state: state, counts: counts)
    }

    init(fingerprint: String, partition: Partition, round: Int, rounds: Int, state: PartitionStatistics.State, counts: Counts) {
        self.fingerprint = fingerprint
        self.partition = partition
        self.round = round
        self.rounds = rounds
        self.state = state
        self.counts = counts
    }

    /// Reads the part at `path`; nil when it is not a statistics file MergeKit wrote.
    static func read(_ path: String) throws(MergeKitError) -> StatisticsPart? {
        let bytes = try FileSystem.readFile(path, limit: sizeLimit)
        guard let json = try? JSONParser.parse(bytes) else { return nil }
        return StatisticsPart(json)
    }

    /// Writes the part to `path` (under a temporary name, then renamed: never seen half-written).
    /// An existing file is replaced only when it is a statistics file itself.
    func write(to path: String) throws(MergeKitError) {
        if FileSystem.kind(of: path, followingLinks: false) != .missing {
            let existing = try? FileSystem.readFile(path, limit: Self.sizeLimit, followSymlinks: false)
            guard let existing, let json = try? JSONParser.parse(existing), json["format"]?.stringValue == Self.format else {
                throw MergeKitError(.outputExists, file: path, "exists and is not a statistics file MergeKit wrote; it is never replaced",
                                    fix: "Move it away, or write the statistics elsewhere")
            }
        }
        try OutputTemporaries.writeWhole(path, Array((json.serialized(indent: 1) + "\n").utf8))
    }

    // MARK: Encodings

    /// LEB128 of each value.
    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// The LEB128 values of `bytes` (nil when malformed or longer than `limit` values).
    private static func varints(_ bytes: [UInt8], limit: Int) -> [UInt64]? {
        var values: [UInt64] = []
        var value: UInt64 = 0, shift: UInt64 = 0
        for byte in bytes {
            guard shift < 64 else { return nil }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                guard values.count < limit else { return nil }
                values.append(value)
                value = 0
                shift = 0
            } else {
                shift += 7
            }
        }
        return shift == 0 ? values : nil
    }

    /// A histogram as (zero bins skipped, count) pairs, base64.
    static func encode(histogram: [Int]) -> String {
        var bytes: [UInt8] = []
        var skipped: UInt64 = 0
        for count in histogram {
            if count == 0 {
                skipped += 1
            } else {
                appendVarint(skipped, to: &bytes)
                appendVarint(UInt64(count), to: &bytes)
                skipped = 0
            }
        }
        return Data(bytes).base64EncodedString()
    }

    static func decode(histogram text: String) -> [Int]? {
        guard let data = Data(base64Encoded: text), let values = varints(Array(data), limit: 2 * RadixSelection.bins),
              values.count % 2 == 0 else { return nil }
        var histogram = [Int](repeating: 0, count: RadixSelection.bins)
        var bin = 0
        for pair in stride(from: 0, to: values.count, by: 2) {
            let skip = values[pair], count = values[pair + 1]
            guard count > 0, count < UInt64(Int.max), skip < UInt64(RadixSelection.bins) else { return nil }
            bin += Int(skip)
            guard bin < histogram.count else { return nil }
            histogram[bin] = Int(count)
            bin += 1
        }
        return histogram
    }

    /// Increasing integers as LEB128 differences, base64.
    static func encode(integers: [Int]) -> String {
        var bytes: [UInt8] = []
        var previous = -1
        for value in integers {
            appendVarint(UInt64(value - previous - 1), to: &bytes)
            previous = value
        }
        return Data(bytes).base64EncodedString()
    }

    static func decode(integers text: String) -> [Int]? {
        guard let data = Data(base64Encoded: text), let values = varints(Array(data), limit: sizeLimit) else { return nil }
        var result: [Int] = []
        var previous = -1
        for step in values {
            guard step < UInt64(Int.max / 2), previous < Int.max / 2 else { return nil }
            previous += Int(step) + 1
            result.append(previous)
        }
        return result
    }

    /// Doubles by their bits, little-endian, base64.
    static func encode(doubles: [Double]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(doubles.count * 8)
        for value in doubles {
            var bits = value.bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { bytes += $0 }
        }
        return Data(bytes).base64EncodedString()
    }

    static func decode(doubles text: String) -> [Double]? {
        guard let data = Data(base64Encoded: text), data.count % 8 == 0 else { return nil }
        let bytes = Array(data)
        return stride(from: 0, to: bytes.count, by: 8).map { start in
            var bits: UInt64 = 0
            for k in 0..<8 { bits |= UInt64(bytes[start + k]) << UInt64(8 * k) }
            return Double(bitPattern: bits)
        }
    }
}

import CYaml
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Bounds on a recipe's size and YAML structure, checked before the YAML is composed into a tree.
///
/// Yams composes its node tree recursively, and the recipe reader walks it recursively, so a
/// recipe nested a few thousand levels deep (`[[[[…`, or thousands of indented lines) would
/// overflow the stack: a crash, not an error. YAML aliases can also make a small text stand for a
/// huge tree ("billion laughs": each anchor lists the previous one ten times). So the text is
/// first read as libyaml events, whose parser is iterative (a state machine with explicit stacks,
/// no recursion), and the recipe is refused with the line where it crosses a limit:
///
/// - nesting: at most `maximumDepth` collections inside each other, block (indented) and flow
///   (`[`/`{`) alike, including the depth an alias adds where it is used;
/// - expansion: at most `maximumNodes` values in the tree with every alias replaced by what its
///   anchor stands for (counted from the anchors' sizes, never expanded);
/// - size: at most `maximumBytes` of text;
/// - documents: an alias names an anchor of its own document. YAML anchors belong to one
///   document, and PyYAML (mergekit's loader) refuses an alias of an earlier document's anchor;
///   Yams would resolve it, so it is refused here.
///
/// A real recipe nests about 6 deep and holds a few hundred values. Syntax errors are left to the
/// composition that follows, which reports them with their position.
enum RecipeLimits {
    static let maximumBytes = 1 << 20
    static let maximumDepth = 64
    static let maximumNodes = 100_000

    /// Reads a recipe file: a regular file (a FIFO or a device is refused, never waited on; see
    /// `FileSystem.openRegularFile`) of at most `maximumBytes`, refused by its size before reading.
    static func readFile(_ path: String) throws(MergeKitError) -> [UInt8] {
        if FileSystem.kind(of: path) == .directory {
            throw MergeKitError(.isDirectory, file: path, "is a directory", fix: "Give the recipe file")
        }
        let (fd, status) = try FileSystem.openRegularFile(path)
        close(fd)
        if Int(status.st_size) > maximumBytes { throw tooLarge(path: path) }
        return try FileSystem.readFile(path, limit: maximumBytes)
    }

    static func tooLarge(path: String) -> MergeKitError {
        MergeKitError(.invalidArgument, file: path, "is larger than \(maximumBytes) bytes (1 MiB), the largest recipe read",
                      fix: "A recipe names its checkpoints and holds no data; check that this is the recipe")
    }

    static func check(_ text: String, path: String) throws(MergeKitError) {
        let bytes = Array(text.utf8)
        if bytes.count > maximumBytes { throw tooLarge(path: path) }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return }
        defer { yaml_parser_delete(&parser) }
        try bytes.withUnsafeBufferPointer { (buffer) throws(MergeKitError) in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var walk = Walk()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                let fine: Bool
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_DOCUMENT_START_EVENT:
                    fine = walk.startDocument()
                case YAML_SEQUENCE_START_EVENT:
                    fine = walk.open(anchor: string(event.data.sequence_start.anchor))
                case YAML_MAPPING_START_EVENT:
                    fine = walk.open(anchor: string(event.data.mapping_start.anchor))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    fine = walk.close()
                case YAML_SCALAR_EVENT:
                    fine = walk.leaf(anchor: string(event.data.scalar.anchor))
                case YAML_ALIAS_EVENT:
                    fine = walk.alias(string(event.data.alias.anchor))
                default:
                    fine = true
                }
                guard fine else { throw walk.error(path: path, line: line) }
            }
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }

    /// The open collections and the anchors seen so far, each with the size (values) and height
    /// (collections inside each other; 0 for a scalar) of the tree it stands for, aliases inside
    /// it counted at their anchors' sizes.
    private struct Walk {
        struct Frame {
            var nodes = 1
            var height = 1
            let anchor: String?
        }

        var stack: [Frame] = []
        var anchors: [String: (nodes: Int, height: Int)] = [:]
        /// Anchors of the documents before this one.
        var earlier = Set<String>()
        var tooDeep = false
        /// An alias of an earlier document's anchor.
        var foreignAlias: String?

        mutating func startDocument() -> Bool {
            earlier.formUnion(anchors.keys)
            anchors = [:]
            return true
        }

        mutating func open(anchor: String?) -> Bool {
            stack.append(Frame(anchor: anchor))
            tooDeep = stack.count > RecipeLimits.maximumDepth
            return !tooDeep
        }

        mutating func close() -> Bool {
            guard let frame = stack.popLast() else { return true }
            if let anchor = frame.anchor { anchors[anchor] = (frame.nodes, frame.height) }
            return add(nodes: frame.nodes, height: frame.height)
        }

        mutating func leaf(anchor: String?) -> Bool {
            if let anchor { anchors[anchor] = (1, 0) }
            return add(nodes: 1, height: 0)
        }

        /// An alias of an anchor not (yet) defined is left to the composition, which refuses it.
        mutating func alias(_ name: String?) -> Bool {
            if let name, anchors[name] == nil, earlier.contains(name) {
                foreignAlias = name
                return false
            }
            let target = name.flatMap { anchors[$0] } ?? (1, 0)
            tooDeep = stack.count + target.height > RecipeLimits.maximumDepth
            return !tooDeep && add(nodes: target.nodes, height: target.height)
        }

        /// Adds a finished node to the collection holding it.
        mutating func add(nodes: Int, height: Int) -> Bool {
            guard !stack.isEmpty else { return nodes <= RecipeLimits.maximumNodes }
            stack[stack.count - 1].nodes += nodes
            stack[stack.count - 1].height = max(stack[stack.count - 1].height, height + 1)
            return stack[stack.count - 1].nodes <= RecipeLimits.maximumNodes
        }

        func error(path: String, line: Int) -> MergeKitError {
            if let foreignAlias {
                return MergeKitError(.invalidArgument, file: path,
                    "line \(line): *\(foreignAlias) names an anchor of an earlier document; an anchor belongs to its own document (mergekit's YAML loader refuses this too)",
                    fix: "Repeat the anchored value in this document, or define the anchor again here")
            }
            if tooDeep {
                return MergeKitError(.invalidArgument, file: path,
                    "line \(line): lists and mappings nest more than \(RecipeLimits.maximumDepth) deep (counting what aliases stand for)",
                    fix: "A recipe nests about 6 deep; flatten the structure")
            }
            return MergeKitError(.invalidArgument, file: path,
                "line \(line): with every alias (*name) replaced by its anchor the recipe holds more than \(RecipeLimits.maximumNodes) values",
                fix: "Use fewer or smaller anchors")
        }
    }
}

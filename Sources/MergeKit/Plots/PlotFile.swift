import Foundation
import ZIPFoundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writing plots: the SVG, and a PNG rendered from it by `rsvg-convert` (librsvg) when asked.
///
/// The output policy of every MergeKit output, for files of the plots' own kind: a plot path must
/// not be, lie inside or link to an input; its directory must exist and be writable; what is
/// already there is replaced only when it is a plot MergeKit wrote — an SVG beginning with its
/// signature line, a PNG carrying its `tEXt` chunk "Software: MergeKit" — and `overwrite` is on.
/// Anything else there (a user's file, a directory, a symbolic link, a FIFO) is never replaced.
/// Every problem is reported together, before anything is written. Both files are written under
/// temporary names (`OutputTemporaries`) and renamed into place only when both are complete, the
/// PNG first, so a failure (rsvg-convert missing or failing) leaves nothing new behind.
public enum PlotFile {
    /// The program that renders PNGs.
    public static let rendererName = "rsvg-convert"
    /// How long rendering one picture may take before it is stopped.
    static let renderTimeout: Double = 120
    /// The `tEXt` chunk MergeKit puts after a PNG's header, by which it recognises its own PNGs.
    static let pngText = Array("Software".utf8) + [0] + Array("MergeKit".utf8)

    /// The PNG written beside the SVG at `path`: `path` with its `.svg` extension (in any case)
    /// replaced by `.png`, or `.png` appended.
    public static func pngPath(for path: String) -> String {
        path.lowercased().hasSuffix(".svg") ? String(path.dropLast(4)) + ".png" : path + ".png"
    }

    /// The files `write` writes for `path`, in order: the SVG, then the PNG when `png`.
    public static func paths(for path: String, png: Bool) -> [String] {
        png ? [path, pngPath(for: path)] : [path]
    }

    /// `rsvg-convert` found in `PATH` (nil when it is not installed).
    public static func renderer(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let search = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in search.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = FileSystem.join(String(directory), rendererName)
            if FileSystem.kind(of: candidate) == .file, FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Checks everything `write` needs, before any work: each path against `inputs` and what is
    /// on disk, and the renderer when `png`. Throws every problem found, together.
    public static func check(path: String, png: Bool, overwrite: Bool = false, inputs: [String] = []) throws(MergeKitError) {
        var problems = ProblemList()
        for file in paths(for: path, png: png) {
            if let problem = problem(file, overwrite: overwrite, inputs: inputs) { problems.add(problem) }
        }
        if png && renderer() == nil { problems.add(rendererMissing(for: pngPath(for: path))) }
        try problems.throwIfAny(before: "writing the plot")
    }

    /// Writes `svg` at `path` and, when `png`, the PNG rendered from it at `pngPath(for: path)`
    /// (see the type's documentation for what may be replaced). Returns the paths written.
    @discardableResult
    public static func write(svg: String, to path: String, png: Bool, overwrite: Bool = false,
                             inputs: [String] = []) throws(MergeKitError) -> [String] {
        try check(path: path, png: png, overwrite: overwrite, inputs: inputs)
        let svgTemporary = OutputTemporaries.newPath(for: path, role: .writing)
        var temporaries = [svgTemporary]
        TemporaryFiles.register(file: svgTemporary)
        defer {
            for temporary in temporaries { _ = unlink(temporary) }
            TemporaryFiles.unregister(temporaries)
        }
        try naming(path) { () throws(MergeKitError) in try FileSystem.writeFile(svgTemporary, Array(svg.utf8)) }
        var renames = [(svgTemporary, path)]
        if png {
            let target = pngPath(for: path)
            let pngTemporary = OutputTemporaries.newPath(for: target, role: .writing)
            temporaries.append(pngTemporary)
            TemporaryFiles.register(file: pngTemporary)
            try renderTagged(svgTemporary, to: pngTemporary, for: target)
            renames.insert((pngTemporary, target), at: 0)
        }
        // What is there now may have changed since the check: look again just before replacing it.
        var problems = ProblemList()
        for (_, file) in renames {
            if let problem = problem(file, overwrite: overwrite, inputs: inputs) { problems.add(problem) }
        }
        try problems.throwIfAny(before: "writing the plot")
        try TemporaryFiles.deferringSignals(thenUnregister: temporaries) { () throws(MergeKitError) in
            for (temporary, file) in renames {
                guard rename(temporary, file) == 0 else { throw FileSystem.writeError(file: file, errno: errno) }
            }
        }
        temporaries = []
        FileSystem.syncDirectory(FileSystem.parentDirectory(of: path))
        return renames.map(\.1).reversed()
    }

    /// Renders the SVG file `svg` as the PNG file `png` carrying MergeKit's text chunk (`tagged`);
    /// errors name `target`, where the PNG is going.
    static func renderTagged(_ svg: String, to png: String, for target: String) throws(MergeKitError) {
        try render(svg, to: png, for: target)
        let rendered = try FileSystem.readFile(png, limit: 1 << 28)
        guard let tagged = tagged(png: rendered) else {
            throw MergeKitError(.writeFailed, file: target, "\(rendererName) did not write a PNG image",
                fix: "Check that `\(rendererName) --version` works; reinstall it (Debian and Ubuntu: apt-get install librsvg2-bin)")
        }
        try naming(target) { () throws(MergeKitError) in try FileSystem.writeFile(png, tagged) }
    }

    /// Runs `body`, its errors naming `file` (the plot) instead of the temporary written.
    private static func naming(_ file: String, _ body: () throws(MergeKitError) -> Void) throws(MergeKitError) {
        do throws(MergeKitError) {
            try body()
        } catch {
            var named = error
            named.file = file
            throw named
        }
    }

    // MARK: The policy

    /// Why `file` cannot be written, if it cannot.
    static func problem(_ file: String, overwrite: Bool, inputs: [String]) -> MergeKitError? {
        guard !file.isEmpty else {
            return MergeKitError(.invalidArgument, "the plot's path is empty", fix: "Give a path such as analysis.svg")
        }
        var apart = ProblemList()
        OutputGuard.checkApart(output: file, from: inputs, into: &apart)
        if let first = apart.items.first { return first }
        let parent = FileSystem.parentDirectory(of: FileSystem.canonicalPath(forNew: file))
        guard FileSystem.kind(of: parent) == .directory else {
            return MergeKitError(.fileNotFound, file: file, "cannot be created: the directory \(parent) does not exist",
                fix: "Create the directory first, or choose another path")
        }
        guard access(parent, W_OK) == 0 else {
            return MergeKitError(.writeFailed, file: file, "cannot be created: the directory \(parent) is not writable",
                fix: "Check the directory's permissions, or choose another path")
        }
        switch FileSystem.kind(of: file, followingLinks: false) {
        case .missing:
            return nil
        case .file:
            guard isOwnPlot(file) else {
                return MergeKitError(.outputNotReplaceable, file: file,
                    "already exists and is not a plot MergeKit wrote; it is never replaced",
                    fix: "Move it away, or choose another path for the plot")
            }
            return overwrite ? nil : MergeKitError(.outputExists, file: file, "already exists",
                fix: "Choose a new path for the plot, or \(term: .overwrite) to replace it")
        case .directory:
            return MergeKitError(.outputNotReplaceable, file: file, "is a directory; a plot is a file and never replaces one",
                fix: "Choose a file path for the plot, such as analysis.svg")
        case .other:
            return MergeKitError(.outputNotReplaceable, file: file,
                "is not a regular file (a symbolic link, FIFO, socket or device) and is never replaced by a plot",
                fix: "Choose another path for the plot")
        }
    }

    /// Whether the regular file at `file` is a plot MergeKit wrote (an SVG starting with its
    /// signature, or a PNG with its text chunk first after the header).
    static func isOwnPlot(_ file: String) -> Bool {
        guard let (fd, _) = try? FileSystem.openRegularFile(file, followSymlinks: false) else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 128)
        let count = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        guard count > 0 else { return false }
        let bytes = Array(head[0..<count])
        if bytes.starts(with: Array(SVGCanvas.signature.utf8)) { return true }
        let chunk = 8 + 25
        return bytes.starts(with: pngSignature) && bytes.count >= chunk + 8 + pngText.count
            && Array(bytes[chunk + 4..<chunk + 8]) == Array("tEXt".utf8)
            && Array(bytes[chunk + 8..<chunk + 8 + pngText.count]) == pngText
    }

    // MARK: PNG

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// `png` with MergeKit's `tEXt` chunk inserted after its IHDR chunk; nil when `png` does not
    /// start with a PNG signature and header.
    static func tagged(png: [UInt8]) -> [UInt8]? {
        let headerEnd = 8 + 25
        guard png.count > headerEnd, png.starts(with: pngSignature), Array(png[12..<16]) == Array("IHDR".utf8),
              png[8..<12] == [0, 0, 0, 13] else { return nil }
        let body = Array("tEXt".utf8) + pngText
        let crc = UInt32(Data(body).crc32(checksum: 0))
        func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        return Array(png[0..<headerEnd]) + bigEndian(UInt32(pngText.count)) + body + bigEndian(crc) + Array(png[headerEnd...])
    }

    static func rendererMissing(for file: String) -> MergeKitError {
        MergeKitError(.toolMissing, file: file, "cannot be rendered: \(rendererName) (librsvg) is not installed or not in PATH",
            fix: "Install it (Debian and Ubuntu: apt-get install librsvg2-bin; macOS: brew install librsvg), or leave out the PNG")
    }

    /// Runs `rsvg-convert` on `svg`, writing `png`, within `renderTimeout` seconds.
    static func render(_ svg: String, to png: String, for target: String) throws(MergeKitError) {
        guard let tool = renderer() else { throw rendererMissing(for: target) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["--format", "png", "--output", png, svg]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        let collected = CollectedOutput()
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do {
            try process.run()
        } catch {
            throw MergeKitError(.toolMissing, file: target, "cannot be rendered: \(tool) could not be started (\(error.localizedDescription))",
                fix: "Check that `\(rendererName) --version` works; reinstall it (Debian and Ubuntu: apt-get install librsvg2-bin)")
        }
        let reader = errors.fileHandleForReading
        let read = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            collected.append(reader.readDataToEndOfFile())
            read.signal()
        }
        if done.wait(timeout: .now() + renderTimeout) == .timedOut {
            process.terminate()
            _ = done.wait(timeout: .now() + 10)
            throw MergeKitError(.writeFailed, file: target, "cannot be rendered: \(rendererName) did not finish within \(Int(renderTimeout)) s",
                fix: "Check that `\(rendererName) --version` works, and that the machine is not overloaded")
        }
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            _ = read.wait(timeout: .now() + 5)
            let message = collected.text.split(separator: "\n").first.map { ": " + $0.prefix(300) } ?? ""
            throw MergeKitError(.writeFailed, file: target,
                "cannot be rendered: \(rendererName) failed (status \(process.terminationStatus)\(message))",
                fix: "Check that `\(rendererName) --version` works; reinstall it (Debian and Ubuntu: apt-get install librsvg2-bin)")
        }
    }
}

/// What a child process wrote on a pipe, read on another thread.
private final class CollectedOutput: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ more: Data) {
        lock.lock()
        data.append(more.prefix(1 << 16))
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

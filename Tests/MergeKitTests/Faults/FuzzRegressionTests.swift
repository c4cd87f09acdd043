import Foundation
import Testing
@testable import MergeKit

/// Replays the fuzzer's seed corpus and every saved crash input through the plain (non-libFuzzer)
/// build of `header-fuzz`, which runs the same checks as the fuzzer: no crash, rejections name the
/// file, accepted headers are consistent and survive being written back, JSON round-trips.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    static let executable: String = {
        URL(fileURLWithPath: CLI.executable).deletingLastPathComponent().appendingPathComponent("header-fuzz").path
    }()

    @Test("header-fuzz passes its seeds and saved regressions")
    func replay() throws {
        let directories = ["Fuzz/seeds", "Fuzz/regressions"].map { TestSupport.packageRoot.appendingPathComponent($0).path }
            .filter { FileSystem.kind(of: $0) == .directory }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = directories
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(stderr)")
        #expect(stdout.contains("no failures"), "\(stdout)")
        let seeds = TestSupport.listing(directories[0]).count
        #expect(seeds >= 10 && stdout.contains("inputs checked"))
    }
}

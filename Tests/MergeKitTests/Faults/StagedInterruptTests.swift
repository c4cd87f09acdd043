import Foundation
import Testing
@testable import MergeKit

/// SIGINT during the second stage of a multi-document recipe: the first stage's intermediate,
/// already complete, goes with the work directory (its files are registered as temporaries),
/// in the default temporary work directory and in one of the user's that is not kept.
@Suite("Interrupts: multi-document recipes")
struct StagedInterruptTests {
    @Test("SIGINT while the output is made from an intermediate: exit 130, no work directory or intermediate left")
    func sigintDuringSecondStage() throws {
        let s = try InterruptTests.Setup()
        defer { s.remove() }
        let recipe = s.dir + "/multi.yml"
        StagedRunTests.write("""
            name: first
            merge_method: task_arithmetic
            base_model: \(s.base)
            models:
              - model: \(s.model)
                parameters: {weight: 0.5}
            ---
            merge_method: task_arithmetic
            base_model: \(s.base)
            models:
              - model: first
                parameters: {weight: 0.5}
            """, to: recipe)
        let work = s.dir + "/work"
        for extra in [[], ["--work-dir", work]] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.executable)
            process.arguments = ["run", recipe, "-o", s.outputDirectory + "/merged", "--threads", "1"] + extra
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // The intermediate is complete once it is renamed into place in the work directory.
            func intermediate() -> Bool {
                if !extra.isEmpty { return FileSystem.exists(work + "/first/model.safetensors") }
                return s.temporaries.contains { FileSystem.exists(s.outputDirectory + "/" + $0 + "/stage-000/model.safetensors") }
            }
            let deadline = Date().addingTimeInterval(30)
            while !intermediate() && process.isRunning && Date() < deadline { usleep(200) }
            guard process.isRunning && intermediate() else {
                process.waitUntilExit()
                Issue.record("the run ended before its second stage could be interrupted (status \(process.terminationStatus), \(extra))")
                continue
            }
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 130, "\(extra)")
            #expect(TestSupport.listing(s.outputDirectory).isEmpty, "left behind: \(TestSupport.listing(s.outputDirectory)) \(extra)")
            #expect(!FileSystem.exists(work), "left behind: \(TestSupport.listing(work))")
        }
    }
}

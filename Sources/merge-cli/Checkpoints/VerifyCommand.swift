import ArgumentParser
import Foundation
import MergeKit

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that a checkpoint is valid and readable (exit 0) or not (exit 1); usable as a CI gate.",
        discussion: """
            Validates every safetensors header (or a PyTorch checkpoint's archive, pickle and \
            storages), every shard and the index of a sharded directory, then reads every tensor's \
            bytes once. With --check-finite, also counts NaN and ±Inf in \
            every float tensor (F16, BF16, F32, F64) and fails naming the first tensor that holds any.
            """)

    @Argument(help: ArgumentHelp("A checkpoint: a .safetensors or PyTorch .bin/.pt/.pth/.ckpt file, or a model directory.", valueName: "path"))
    var path: String

    @Flag(name: .customLong("check-finite"), help: "Fail if a float tensor holds NaN or ±Inf; report the counts.")
    var checkFinite = false

    @Flag(name: .long, help: "Print the result as JSON on stdout (also on failure).")
    var json = false

    func run() throws {
        let verifier = CheckpointVerifier(checkFinite: checkFinite)
        let report: CheckpointVerifier.Report
        // Reported whatever the verdict: a run killed mid-write leaves one (and maybe no checkpoint).
        let stale = CheckpointVerifier.staleTemporaries(near: path)
        for temporary in stale {
            FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(temporary.description))\n".utf8))
        }
        do {
            report = try verifier.verify(path: path)
        } catch {
            let error = error.inCLIWords
            if json { print(Self.json(path: path, report: nil, error: error, stale: stale).serialized(indent: 2)) }
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        let error = report.nonFiniteError?.inCLIWords
        if json {
            print(Self.json(path: path, report: report, error: error, stale: stale).serialized(indent: 2))
        } else {
            print("\(TerminalText.escaped(path)): \(error == nil ? "OK" : "FAILED")")
            print("  " + report.summary)
            for line in report.nonFiniteText { print("  " + line) }
        }
        if let error {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func json(path: String, report: CheckpointVerifier.Report?, error: MergeKitError?,
                     stale: [CheckpointVerifier.StaleTemporary]) -> JSONValue {
        var members = [JSONMember("path", .string(path)), JSONMember("valid", .bool(error == nil))]
        if let report {
            members += [
                JSONMember("layout", .string(report.layoutDescription)),
                JSONMember("files", .array(report.files.map { .string($0) })),
                JSONMember("tensor_count", .int(report.tensorCount)),
                JSONMember("bytes_read", .int(report.bytesRead)),
                JSONMember("non_finite", report.nonFiniteJSON),
            ]
        }
        members.append(JSONMember("stale_temporaries", .array(stale.map(\.json))))
        // The error object every command prints with --json (`ErrorOutput`).
        members.append(JSONMember("error", error.map { ErrorOutput.object($0, exitStatus: 1) } ?? .null))
        return .object(members)
    }
}

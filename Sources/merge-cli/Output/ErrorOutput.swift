import ArgumentParser
import Foundation
import MergeKit

/// How every command reports a failure: the message on stderr ("error: …", names escaped) and,
/// when `--json` was given, one JSON document on stdout instead of the command's usual one:
///
///     {"error": {"code": "nonFiniteValue", "message": "…", "file": "…", "tensor": "…",
///                "fix": "…", "exit_status": 1, "problems": [ {…}, … ]},
///      "peak_memory_bytes": 31457280}
///
/// `code` is a `MergeKitError.Code` (`invalidArgument` for malformed arguments, exit status 64);
/// `file`, `tensor` and `fix` are null when unknown; `problems` lists each problem when several
/// were found together (same members, without `exit_status` and `problems`).
enum ErrorOutput {
    /// Whether `--json` is among the arguments (before a `--`): then failures print JSON too,
    /// including argument errors found before the command's options are parsed.
    static let jsonRequested: Bool = {
        let arguments = CommandLine.arguments.dropFirst()
        return arguments[..<(arguments.firstIndex(of: "--") ?? arguments.endIndex)].contains("--json")
    }()

    /// The failure document: the error object, and the process's peak memory so far (as a
    /// successful run's summary has it).
    static func json(_ error: MergeKitError, exitStatus: Int32) -> JSONValue {
        .object([JSONMember("error", object(error, exitStatus: exitStatus)),
                 JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))])
    }

    /// The error object (with `exit_status` when given).
    static func object(_ error: MergeKitError, exitStatus: Int32?) -> JSONValue {
        var members = [
            JSONMember("code", .string(error.code.rawValue)),
            JSONMember("message", .string(error.description)),
            JSONMember("file", error.file.map { .string($0) } ?? .null),
            JSONMember("tensor", error.tensor.map { .string($0) } ?? .null),
            JSONMember("fix", error.fix.map { .string($0) } ?? .null),
        ]
        if let exitStatus {
            members.append(JSONMember("exit_status", .int(Int(exitStatus))))
            members.append(JSONMember("problems", .array(error.problems.map { object($0, exitStatus: nil) })))
        }
        return .object(members)
    }

    /// Reports `error` in merge-cli's words (stderr, and stdout with --json) and returns the exit
    /// code to throw.
    static func report(_ error: MergeKitError, exitStatus: Int32 = 1) -> ExitCode {
        let error = error.inCLIWords
        if jsonRequested { print(json(error, exitStatus: exitStatus).serialized(indent: 2)) }
        FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
        return ExitCode(exitStatus)
    }

    /// An argument-parser failure (exit 64 for malformed arguments) as a JSON error document, for
    /// `--json` runs; nil for help and version requests and for errors already reported.
    static func json(parserError error: Error, message: String, exitCode: ExitCode) -> JSONValue? {
        // `message` is the parser's message without the usage text.
        guard exitCode != .success, !(error is ExitCode) else { return nil }
        return json(MergeKitError(.invalidArgument, message, fix: "Run `merge-cli help` (or `merge-cli <command> --help`) for the options"),
                    exitStatus: exitCode.rawValue)
    }
}

/// Turns library errors into the CLI's contract: message on stderr (and a JSON error document on
/// stdout with --json, `ErrorOutput`), exit status 1.
func reportingErrors(_ body: () throws(MergeKitError) -> Void) throws {
    do {
        try body()
    } catch {
        throw ErrorOutput.report(error)
    }
}

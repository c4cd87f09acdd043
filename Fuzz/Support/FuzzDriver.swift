import Foundation

/// The `main` the fuzz targets share.
///
/// Built with `-sanitize=fuzzer -D FUZZING` (see `Fuzz/run.sh`), it hands the command line over
/// to libFuzzer with the target's callback. SwiftPM links executables with their `main` renamed
/// to the module's entry point, so the target's `@main` stays the program's entry. In a normal
/// build it runs the target's checks on every file (or every file in every directory) named on
/// the command line, e.g. a crash file libFuzzer wrote, and prints "NAME: N inputs checked, no
/// failures" (a failing check traps before that).
public enum FuzzDriver {
    public typealias Callback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

    public static func main(name: String, check: (UnsafeRawBufferPointer) -> Void, callback: Callback?) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, callback!))
        #else
        var count = 0
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("\(name): \(argument) does not exist\n".utf8))
                exit(2)
            }
            let paths = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []).sorted().map { argument + "/" + $0 }
                : [argument]
            for path in paths {
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                data.withUnsafeBytes { check($0) }
                count += 1
            }
        }
        print("\(name): \(count) inputs checked, no failures")
        exit(0)
        #endif
    }
}

#if FUZZING
/// libFuzzer's entry point for programs that keep their own `main`. (Arguments and result are
/// plain integers and pointers, passed the same way by the Swift and C calling conventions.)
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
#endif

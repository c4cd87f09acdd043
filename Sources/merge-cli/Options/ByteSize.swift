import ArgumentParser
import MergeKit

/// A byte count with an optional suffix: K/M/G/T (or KB/MB/GB/TB) are powers of 1000 as in
/// transformers' "5GB"; KiB/MiB/GiB/TiB are powers of 1024. Rounded to whole bytes; a size that
/// rounds to 0 parses, and `OutputOptions.validate` rejects it with the flag named.
struct ByteSize: ExpressibleByArgument {
    let bytes: Int
    /// The text as given.
    let text: String

    init?(argument: String) {
        guard let bytes = ByteCount.parse(argument) else { return nil }
        self.bytes = bytes
        text = argument
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

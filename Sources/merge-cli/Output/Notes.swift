import Foundation
import MergeKit

/// Prints what a run did around its outputs (stale temporaries removed, entries left aside) on
/// stderr, one "note: …" or "warning: …" line each; warnings even with --quiet.
func printNotes(_ notes: [OutputNote], quiet: Bool) {
    for note in notes where !quiet || note.isWarning {
        FileHandle.standardError.write(Data((TerminalText.escaped(note.description) + "\n").utf8))
    }
}

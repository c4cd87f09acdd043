import ArgumentParser
import Foundation
import MergeKit
import Synchronization

/// How a command finds the Hugging Face models among its model paths (`org/name[@revision]`,
/// `ModelLocator`): an existing local path wins; else the local Hugging Face cache; else, unless
/// --offline (or HF_HUB_OFFLINE=1), the download phase fetches it into that cache first
/// (`HubDownloader`, with a progress line on stderr), before any planning.
struct HubOptions: ParsableArguments {
    @Flag(name: .long, help: "Read Hugging Face models (org/name[@revision]) from the local cache only and never download, as HF_HUB_OFFLINE=1 does.")
    var offline = false

    /// The environment's settings, offline when --offline is given.
    var settings: HubSettings {
        var settings = HubSettings.current
        if offline { settings.offline = true }
        return settings
    }

    /// For `validate()`: a path given with `flag` that is meant as a Hub id but malformed is an
    /// argument error (exit 64).
    static func check(_ paths: [String?], flag: String) throws {
        for case let path? in paths {
            if let error = ModelLocator.malformed(path) { throw ValidationError("\(flag) \(error.description)") }
        }
    }

    /// The download phase for `texts` (what the cache lacks, unless offline), then the locator that
    /// finds every one of them. Downloads are announced on stderr unless `quiet`.
    func locator(for texts: [(text: String, kind: HubFiles.Kind)], quiet: Bool) throws(MergeKitError) -> ModelLocator {
        try HubDownloads.prepare(texts.map { ($0.text, nil, $0.kind) }, settings: settings, quiet: quiet)
    }
}

/// What the download task hands back to the waiting command.
private final class Outcome: Sendable {
    let result = Mutex<Result<[HubReference: String], MergeKitError>?>(nil)
}

/// The download phase as the command line shows it.
enum HubDownloads {
    /// Downloads the Hub models among `texts` that the cache lacks (unless offline) and returns
    /// the locator planning uses. One line per model on stderr (unless `quiet`), and a progress
    /// line when stderr is a terminal.
    static func prepare(_ texts: [(text: String, local: String?, kind: HubFiles.Kind)], settings: HubSettings,
                        quiet: Bool) throws(MergeKitError) -> ModelLocator {
        let locator = ModelLocator(settings: settings)
        guard !settings.offline else { return locator }
        let missing = locator.uncached(texts)
        guard !missing.isEmpty else { return locator }
        if !quiet {
            for (reference, _) in missing {
                FileHandle.standardError.write(Data("downloading \(TerminalText.escaped(reference.description)) from \(TerminalText.escaped(settings.endpoint)) into \(TerminalText.escaped(settings.cache))\n".utf8))
            }
        }
        let bar = DownloadBar(enabled: !quiet && isatty(2) != 0)
        let downloader = HubDownloader(settings: settings)
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        // The download is asynchronous; the command waits for it here, on its own thread.
        Task.detached {
            let result: Result<[HubReference: String], MergeKitError>
            do throws(MergeKitError) {
                result = .success(try await downloader.download(missing) { bar.update($0) })
            } catch {
                result = .failure(error)
            }
            outcome.result.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        bar.finish()
        _ = try outcome.result.withLock { $0! }.get()
        return locator
    }
}

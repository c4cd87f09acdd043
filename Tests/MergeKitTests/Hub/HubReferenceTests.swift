import Foundation
import Testing
@testable import MergeKit

@Suite("Hub ids and settings")
struct HubReferenceTests {
    @Test("org/name and org/name@revision are Hub ids; the revision may be a branch, a tag, a PR ref or a commit")
    func wellFormed() {
        #expect(HubReference.read("org/name") == .reference(HubReference(repository: "org/name")))
        #expect(HubReference.read("meta-llama/Llama-3.2-1B") == .reference(HubReference(repository: "meta-llama/Llama-3.2-1B")))
        #expect(HubReference.read("org/name@v1.0") == .reference(HubReference(repository: "org/name", revision: "v1.0")))
        #expect(HubReference.read("org/name@refs/pr/1") == .reference(HubReference(repository: "org/name", revision: "refs/pr/1")))
        let commit = String(repeating: "ab", count: 20)
        guard case .reference(let pinned) = HubReference.read("org/_name.x@" + commit) else { Issue.record("not read"); return }
        #expect(pinned.isCommit && pinned.resolvedRevision == commit)
        #expect(!HubReference(repository: "org/name", revision: "main").isCommit)
        #expect(HubReference(repository: "org/name").resolvedRevision == "main")
        #expect(HubReference(repository: "Org/my.model").folderName == "models--Org--my.model")
        #expect(HubReference(repository: "org/name", revision: "v1").description == "org/name@v1")
    }

    @Test("Paths are not Hub ids: absolute, ./ ../ ~, no or several slashes, weight and recipe files")
    func paths() {
        for text in ["", "name", "/abs/org/name", "./org/name", "../org/name", "~/org/name", "a/b/c", "dir/model.safetensors",
                     "dir/model.safetensors.index.json", "dir/recipe.yaml", "a//b"] {
            #expect(HubReference.read(text) == .notAnId, "\(text)")
        }
    }

    @Test("Malformed ids say what is wrong")
    func malformed() {
        let cases = [
            ("org/na me", "holds \" \""), ("org/name@", "revision \"\" is empty"), ("org/-name", "starts or ends with - or ."),
            ("org/na--me", "contains -- or .."), ("org/name.git", "ends in .git"), ("/name@v1", nil), ("org/name@a/../b", "component"),
            ("org/name@bad rev", "holds \" \""), ("or.g./name", "starts or ends"), ("org/" + String(repeating: "x", count: 97), "longer than 96"),
            ("org/naïve", "holds \"ï\""), ("/org/name", nil),
        ]
        for (text, expected) in cases {
            guard let expected else {
                #expect(HubReference.read(text) == .notAnId, "\(text)")
                continue
            }
            guard case .malformed(let reason) = HubReference.read(text) else { Issue.record("\(text) is not malformed"); continue }
            #expect(reason.contains(expected), "\(text): \(reason)")
        }
    }

    @Test("Settings follow huggingface_hub's variables: cache, offline, endpoint, token, timeouts")
    func settings() throws {
        let home = TestSupport.temporaryDirectory("hf-home")
        defer { try? FileManager.default.removeItem(atPath: home) }
        #expect(HubSettings.from(environment: ["HOME": "/h"]).cache == "/h/.cache/huggingface/hub")
        #expect(HubSettings.from(environment: ["HOME": "/h", "XDG_CACHE_HOME": "/x"]).cache == "/x/huggingface/hub")
        #expect(HubSettings.from(environment: ["HOME": "/h", "HF_HOME": "~/hf"]).cache == "/h/hf/hub")
        #expect(HubSettings.from(environment: ["HF_HOME": "/a", "HUGGINGFACE_HUB_CACHE": "/legacy"]).cache == "/legacy")
        #expect(HubSettings.from(environment: ["HF_HUB_CACHE": "$ROOT/${SUB}/c", "ROOT": "/r", "SUB": "s",
                                               "HUGGINGFACE_HUB_CACHE": "/legacy"]).cache == "/r/s/c")
        #expect(HubSettings.from(environment: ["HF_HUB_CACHE": "/c/$UNSET"]).cache == "/c/$UNSET")
        for value in ["1", "true", "YES", "On"] { #expect(HubSettings.from(environment: ["HF_HUB_OFFLINE": value]).offline) }
        for value in ["0", "", "no", "false"] { #expect(!HubSettings.from(environment: ["HF_HUB_OFFLINE": value]).offline) }
        #expect(HubSettings.from(environment: ["TRANSFORMERS_OFFLINE": "1"]).offline)
        #expect(HubSettings.from(environment: [:]).endpoint == "https://huggingface.co")
        #expect(HubSettings.from(environment: ["HF_ENDPOINT": "http://mirror.local:8080//"]).endpoint == "http://mirror.local:8080")
        // The token: HF_TOKEN, else the token file under HF_HOME (or HF_TOKEN_PATH).
        try "hf_file_token\n".write(toFile: home + "/token", atomically: true, encoding: .utf8)
        #expect(HubSettings.from(environment: ["HF_HOME": home]).token == "hf_file_token")
        #expect(HubSettings.from(environment: ["HF_HOME": home, "HF_TOKEN": "hf_env"]).token == "hf_env")
        #expect(HubSettings.from(environment: ["HF_HOME": home, "HF_TOKEN_PATH": home + "/none"]).token == nil)
        let timed = HubSettings.from(environment: ["HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "2.5"])
        #expect(timed.metadataTimeout == 3 && timed.readTimeout == 2.5)
    }
}

#!/usr/bin/env python3
"""Checks that merge-cli and huggingface_hub share one Hugging Face cache, both ways.

Serves a small fake Hub on 127.0.0.1 (the endpoints and headers huggingface_hub reads: the
revision API with `siblings`, HEAD/GET `resolve/<rev>/<file>` with `X-Repo-Commit`, `ETag` /
`X-Linked-Etag` / `X-Linked-Size`, the tree API snapshot_download lists files with, LFS files
redirected to `/cdn/<sha256>` on a second port — another origin, as the Hub's CDN is — with
range support)
holding `org/base` and `org/ft` built from Fixtures/f32, then:

  A. merge-cli downloads them (HF_ENDPOINT = the fake hub) into cache A; huggingface_hub,
     offline (HF_HUB_OFFLINE=1), finds every file there: hf_hub_download, try_to_load_from_cache
     and snapshot_download(local_files_only=True), with the original bytes;
  B. huggingface_hub downloads them (snapshot_download) into cache B; merge-cli --offline merges
     from cache B, and its output equals the merge of the fixture directories.

Usage: python check_hub_cache.py MERGE_CLI   (a Python with huggingface_hub installed)
Nothing here reaches beyond 127.0.0.1. CI does not run it; the Swift tests cover the same
layout against their own fake hub.
"""
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITS = {"org/base": hashlib.sha1(b"base").hexdigest(), "org/ft": hashlib.sha1(b"ft").hexdigest()}
SOURCES = {"org/base": os.path.join(ROOT, "f32", "base"), "org/ft": os.path.join(ROOT, "f32", "ft_a")}


def repository(repo):
    files = {}
    for name in sorted(os.listdir(SOURCES[repo])):
        with open(os.path.join(SOURCES[repo], name), "rb") as f:
            files[name] = f.read()
    files["README.md"] = b"# not needed by a merge\n"
    return files


REPOS = {repo: repository(repo) for repo in SOURCES}


def is_lfs(name):
    return name.endswith(".safetensors")


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cdn = ""  # the CDN server's origin, set once it is bound

    def log_message(self, *args):
        pass

    def send(self, status, headers=(), body=b"", head=False):
        self.send_response(status)
        sent = False
        for key, value in headers:
            self.send_header(key, value)
            sent |= key.lower() == "content-length"
        if not sent:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def answer(self, head):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = path.split("/")[1:]
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            repo = parts[2] + "/" + parts[3]
            if repo not in REPOS:
                return self.send(401, [("X-Error-Code", "RepoNotFound")], head=head)
            body = json.dumps({"id": repo, "sha": COMMITS[repo],
                               "siblings": [{"rfilename": n} for n in sorted(REPOS[repo])]}).encode()
            return self.send(200, [("Content-Type", "application/json")], body, head)
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            repo = parts[2] + "/" + parts[3]
            if repo not in REPOS:
                return self.send(401, [("X-Error-Code", "RepoNotFound")], head=head)
            entries = []
            for name, data in sorted(REPOS[repo].items()):
                entry = {"type": "file", "path": name, "size": len(data), "oid": git_sha1(data)}
                if is_lfs(name):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            return self.send(200, [("Content-Type", "application/json")], json.dumps(entries).encode(), head)
        if parts[0] == "cdn" and len(parts) == 2:
            for files in REPOS.values():
                for name, data in files.items():
                    if is_lfs(name) and hashlib.sha256(data).hexdigest() == parts[1]:
                        start = 0
                        rng = self.headers.get("Range")
                        if rng and rng.startswith("bytes=") and rng.endswith("-"):
                            start = int(rng[6:-1])
                        if start:
                            return self.send(206, [("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))],
                                             data[start:], head)
                        return self.send(200, [], data, head)
            return self.send(404, head=head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = parts[0] + "/" + parts[1], "/".join(parts[4:])
            if repo not in REPOS:
                return self.send(401, [("X-Error-Code", "RepoNotFound")], head=head)
            data = REPOS[repo].get(name)
            if data is None:
                return self.send(404, [("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", COMMITS[repo])], head=head)
            if is_lfs(name):
                sha = hashlib.sha256(data).hexdigest()
                return self.send(302, [("Location", Hub.cdn + "/cdn/" + sha), ("X-Repo-Commit", COMMITS[repo]),
                                       ("X-Linked-Etag", '"%s"' % sha), ("X-Linked-Size", str(len(data))),
                                       ("ETag", '"%s"' % git_sha1(b"pointer")), ("Content-Length", "0")], head=head)
            return self.send(200, [("X-Repo-Commit", COMMITS[repo]), ("ETag", '"%s"' % git_sha1(data))], data, head)
        return self.send(404, head=head)

    def do_GET(self):
        self.answer(head=False)

    def do_HEAD(self):
        self.answer(head=True)


def main():
    merge_cli = os.path.abspath(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    Hub.cdn = "http://127.0.0.1:%d" % cdn.server_address[1]
    for s in (server, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    endpoint = "http://127.0.0.1:%d" % server.server_address[1]
    work = tempfile.mkdtemp(prefix="hub-check-")
    passed, failed = 0, 0

    def check(what, ok, detail=""):
        nonlocal passed, failed
        print(("ok    " if ok else "FAIL  ") + what + ("" if ok else ": " + detail))
        passed, failed = passed + ok, failed + (not ok)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    needed = ["config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"]
    try:
        # A. merge-cli writes, huggingface_hub reads offline.
        cache_a = os.path.join(work, "a")
        env = dict(base_env, HF_ENDPOINT=endpoint, HF_HUB_CACHE=cache_a)
        run = subprocess.run([merge_cli, "task-arithmetic", "--base", "org/base", "--model", "org/ft",
                              "-o", os.path.join(work, "a-out")], env=env, capture_output=True, text=True)
        check("merge-cli downloads org/base and org/ft from the fake hub and merges", run.returncode == 0, run.stderr)
        reader = r"""
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache
cache, repos, needed = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = {}
for repo in repos:
    out[repo] = {"files": {n: open(hf_hub_download(repo, n, cache_dir=cache), "rb").read().hex() for n in needed},
                 "cached": [try_to_load_from_cache(repo, n, cache_dir=cache) is not None for n in needed],
                 "snapshot": snapshot_download(repo, cache_dir=cache, local_files_only=True, allow_patterns=needed)}
print(json.dumps(out))
"""
        read = subprocess.run([sys.executable, "-c", reader, cache_a, json.dumps(list(REPOS)), json.dumps(needed)],
                              env=dict(base_env, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
        check("huggingface_hub (offline) reads merge-cli's cache", read.returncode == 0, read.stderr[-2000:])
        if read.returncode == 0:
            found = json.loads(read.stdout)
            for repo in REPOS:
                same = all(bytes.fromhex(found[repo]["files"][n]) == REPOS[repo][n] for n in needed)
                check("%s: hf_hub_download gives the original bytes of %s" % (repo, ", ".join(needed)), same)
                check("%s: try_to_load_from_cache finds every file" % repo, all(found[repo]["cached"]))
                check("%s: snapshot_download(local_files_only) is merge-cli's snapshot" % repo,
                      found[repo]["snapshot"] == os.path.join(cache_a, "models--" + repo.replace("/", "--"), "snapshots", COMMITS[repo]),
                      found[repo]["snapshot"])
            check("merge-cli fetched no README.md", not any(
                os.path.exists(os.path.join(cache_a, "models--" + r.replace("/", "--"), "snapshots", COMMITS[r], "README.md")) for r in REPOS))

        # B. huggingface_hub writes, merge-cli reads offline.
        cache_b = os.path.join(work, "b")
        writer = r"""
import sys
from huggingface_hub import snapshot_download
for repo in sys.argv[2:]:
    snapshot_download(repo, cache_dir=sys.argv[1], allow_patterns=["*.json", "*.safetensors"])
"""
        write = subprocess.run([sys.executable, "-c", writer, cache_b] + list(REPOS), env=dict(base_env, HF_ENDPOINT=endpoint),
                               capture_output=True, text=True)
        check("huggingface_hub downloads org/base and org/ft from the fake hub", write.returncode == 0, write.stderr[-2000:])
        env = dict(base_env, HF_HUB_CACHE=cache_b, HF_ENDPOINT="http://127.0.0.1:9")
        run = subprocess.run([merge_cli, "task-arithmetic", "--base", "org/base", "--model", "org/ft", "--offline",
                              "-o", os.path.join(work, "b-out")], env=env, capture_output=True, text=True)
        check("merge-cli --offline merges from huggingface_hub's cache", run.returncode == 0, run.stderr)
        local = subprocess.run([merge_cli, "task-arithmetic", "--base", SOURCES["org/base"], "--model", SOURCES["org/ft"],
                                "-o", os.path.join(work, "local-out")], env=env, capture_output=True, text=True)
        with open(os.path.join(work, "b-out", "model.safetensors"), "rb") as f1, \
                open(os.path.join(work, "local-out", "model.safetensors"), "rb") as f2:
            check("the merge from either cache equals the merge of the fixture directories", f1.read() == f2.read() and local.returncode == 0)
        with open(os.path.join(work, "a-out", "model.safetensors"), "rb") as f1, \
                open(os.path.join(work, "b-out", "model.safetensors"), "rb") as f2:
            check("the merges from cache A and cache B are identical", f1.read() == f2.read())
    finally:
        server.shutdown()
        cdn.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

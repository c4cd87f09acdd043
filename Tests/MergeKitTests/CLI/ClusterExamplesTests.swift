import Foundation
import Testing
import Yams
@testable import MergeKit

/// The cluster examples (examples/cluster/) run, not only written: the Slurm array script through
/// Tests/cluster/slurm_test.sh (its stand-in sbatch running the arrays as local processes always,
/// a single-node Slurm when one is installed), the Kubernetes Indexed Job's container command as
/// its pods would run it, and the GitHub Actions matrix's steps in their jobs' order — each
/// assembled output against one machine's bytes.
@Suite("Cluster examples", .serialized)
struct ClusterExamplesTests {
    static let root = TestSupport.packageRoot.path
    static let examples = root + "/examples/cluster"
    static let driver = examples + "/partition-run.sh"

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// A started `/bin/sh -c script` whose output goes to files; `wait` gives its result.
    struct Started {
        let process: Process
        let logs: String

        /// Waits for it, terminating it after `timeout` seconds.
        func wait(timeout: Double = 900) throws -> Run {
            defer { try? FileManager.default.removeItem(atPath: logs) }
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            return Run(status: process.terminationStatus, stdout: try String(contentsOfFile: logs + "/out", encoding: .utf8),
                       stderr: try String(contentsOfFile: logs + "/err", encoding: .utf8))
        }
    }

    /// Starts `/bin/sh -c script` (arguments after it as $0, $1…) in `directory` with
    /// `environment` over the test process's.
    static func start(_ script: String, _ arguments: [String] = [], in directory: String = root,
                      environment: [String: String] = [:]) throws -> Started {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let logs = TestSupport.temporaryDirectory("cluster-logs")
        FileManager.default.createFile(atPath: logs + "/out", contents: nil)
        FileManager.default.createFile(atPath: logs + "/err", contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logs + "/out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logs + "/err"))
        try process.run()
        return Started(process: process, logs: logs)
    }

    static func shell(_ script: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws -> Run {
        try start(script, arguments, environment: environment).wait()
    }

    /// Starts several scripts at once (as a scheduler's tasks) and waits for all.
    static func concurrently(_ scripts: [(script: String, environment: [String: String])]) throws -> [Run] {
        let started = try scripts.map { try start($0.script, environment: $0.environment) }
        return try started.map { try $0.wait() }
    }

    /// The merge `arguments` (without -o) on one machine into `output`, moved to `output.reference`.
    static func reference(_ arguments: String, output: String) throws {
        let whole = try shell("exec \"$0\" \(arguments) -o \"$1\" 2>/dev/null", [CLI.executable, output])
        #expect(whole.status == 0)
        try FileManager.default.moveItem(atPath: output, toPath: output + ".reference")
    }

    static var cases: Int {
        (try? String(contentsOfFile: root + "/Tests/cluster/cases.txt", encoding: .utf8))?.split(separator: "\n")
            .filter { !$0.hasPrefix("#") && !$0.isEmpty }.count ?? 0
    }

    @Test("The Slurm array script with the arrays run as local processes: every method, global TIES and a sweep give one machine's bytes")
    func slurmScriptLocal() throws {
        let run = try Self.shell("exec \"$0\" \"$1\" local 3", [Self.root + "/Tests/cluster/slurm_test.sh", CLI.executable])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(Self.cases >= 24)
        #expect(run.stdout.contains("cluster test (local, 3 partitions): \(Self.cases) of \(Self.cases) cases identical"), "\(run.stdout)")
    }

    /// Slurm's daemons are installed and this process may start them (root).
    static var slurmAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/slurmctld") && FileManager.default.isExecutableFile(atPath: "/usr/sbin/munged")
            && getuid() == 0
    }

    @Test("The Slurm array script on a single-node Slurm started for the test: one machine's bytes",
          .enabled(if: ClusterExamplesTests.slurmAvailable))
    func slurmScript() throws {
        let run = try Self.shell("exec \"$0\" \"$1\" slurm 3", [Self.root + "/Tests/cluster/slurm_test.sh", CLI.executable])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stdout.contains("cluster test (slurm, 3 partitions): \(Self.cases) of \(Self.cases) cases identical"), "\(run.stdout)")
    }

    @Test("The Kubernetes Indexed Job: its pods' command, run at once with JOB_COMPLETION_INDEX, gives one machine's bytes")
    func kubernetesJob() throws {
        let text = try String(contentsOfFile: Self.examples + "/k8s-indexed-job.yaml", encoding: .utf8)
        let job = try #require(try Yams.load(yaml: text) as? [String: Any])
        #expect(job["kind"] as? String == "Job" && job["apiVersion"] as? String == "batch/v1")
        let spec = try #require(job["spec"] as? [String: Any])
        #expect(spec["completionMode"] as? String == "Indexed")
        let count = try #require(spec["completions"] as? Int)
        #expect(spec["parallelism"] as? Int == count, "every partition runs at once (they wait for each other's statistics)")
        let pod = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        #expect(container["command"] as? [String] == ["/bin/sh", "-c"])
        let script = try #require((container["args"] as? [String])?.first)
        #expect(script.contains("partition-run.sh all \"$JOB_COMPLETION_INDEX\" \(count)"), "\(script)")
        let env = Dictionary(uniqueKeysWithValues: try #require(container["env"] as? [[String: Any]]).compactMap { entry in
            (entry["name"] as? String).map { ($0, entry["value"] as? String ?? "") }
        })
        #expect(Set(env.keys).isSuperset(of: ["MERGE_ARGS", "MERGE_OUTPUT", "STATS_DIR", "MERGE_CLI"]))

        // The pods: the manifest's command and merge, on the fixtures (its /data paths), here.
        let dir = TestSupport.temporaryDirectory("cluster-k8s")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arguments = try #require(env["MERGE_ARGS"]).replacingOccurrences(of: "/data/base", with: "Fixtures/bf16/base")
            .replacingOccurrences(of: "/data/math", with: "Fixtures/bf16/ft_a").replacingOccurrences(of: "/data/code", with: "Fixtures/bf16/ft_b")
            + " --max-shard-size 3KB"
        #expect(arguments.hasPrefix("ties --density"))
        try Self.reference(arguments, output: dir + "/merged")
        let local = script.replacingOccurrences(of: "/opt/mergekit/examples/cluster/partition-run.sh", with: Self.driver)
        #expect(local != script)
        let pods = try Self.concurrently((0..<count).map { index in
            (local, ["JOB_COMPLETION_INDEX": "\(index)", "MERGE_ARGS": arguments, "MERGE_OUTPUT": dir + "/merged",
                     "STATS_DIR": dir + "/stats", "MERGE_CLI": CLI.executable, "WAIT_SECONDS": "300"])
        })
        for pod in pods { #expect(pod.status == 0, "\(pod.stderr)") }
        #expect(try PartitionTests.contents(dir + "/merged") == PartitionTests.contents(dir + "/merged.reference"))
        // Three statistics rounds, every partition's file of each.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/stats").filter { $0.hasPrefix("round-") }.count == 3 * count)
    }

    @Test("The GitHub Actions matrix: every job's partition-run.sh step, in the jobs' order, gives one machine's bytes")
    func githubWorkflow() throws {
        let text = try String(contentsOfFile: Self.examples + "/github-matrix.yml", encoding: .utf8)
        let workflow = try #require(try Yams.load(yaml: text) as? [String: Any])
        let env = try #require(workflow["env"] as? [String: Any]).mapValues { "\($0)" }
        let count = try #require(Int(env["COUNT"] ?? ""))
        let jobs = try #require(workflow["jobs"] as? [String: [String: Any]])
        // The jobs in the order their `needs` make.
        var order: [String] = []
        while order.count < jobs.count {
            let ready = jobs.keys.sorted().filter { name in
                !order.contains(name) && [jobs[name]!["needs"]].compactMap { $0 as? String }.allSatisfy(order.contains)
            }
            #expect(!ready.isEmpty, "the jobs' needs form a cycle")
            if ready.isEmpty { return }
            order += ready
        }
        #expect(order == ["build", "stats-1", "stats-2", "stats-3", "merge", "assemble"])

        let dir = TestSupport.temporaryDirectory("cluster-github")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arguments = try #require(env["MERGE_ARGS"])
        try Self.reference(arguments, output: dir + "/merged")
        let environment = env.merging(["MERGE_OUTPUT": dir + "/merged", "STATS_DIR": dir + "/stats", "MERGE_CLI": CLI.executable]) { $1 }
        var ran: [String] = []
        for name in order {
            let job = jobs[name]!
            let steps = try #require(job["steps"] as? [[String: Any]])
            let runs = steps.compactMap { $0["run"] as? String }.filter { $0.contains("partition-run.sh") }
            guard name != "build" else {
                #expect(runs.isEmpty)
                continue
            }
            #expect(runs.count == 1, "\(name)")
            let command = try #require(runs.first)
            let matrix = ((job["strategy"] as? [String: Any])?["matrix"] as? [String: Any])?["partition"] as? [Int]
            if let matrix {
                #expect(matrix == Array(0..<count), "\(name): the matrix covers every partition of COUNT")
                #expect(command == "examples/cluster/partition-run.sh \(name) ${{ matrix.partition }} $COUNT", "\(command)")
                // The matrix's jobs, at once (their files shared, as the artifacts share them).
                let results = try Self.concurrently(matrix.map { partition in
                    (command.replacingOccurrences(of: "${{ matrix.partition }}", with: "\(partition)"), environment)
                })
                for result in results { #expect(result.status == 0, "\(name): \(result.stderr)") }
            } else {
                #expect(command == "examples/cluster/partition-run.sh \(name) 0 $COUNT", "\(command)")
                let result = try Self.shell(command, environment: environment)
                #expect(result.status == 0, "\(name): \(result.stderr)")
            }
            ran.append(name)
        }
        #expect(ran == ["stats-1", "stats-2", "stats-3", "merge", "assemble"])
        #expect(try PartitionTests.contents(dir + "/merged") == PartitionTests.contents(dir + "/merged.reference"))
    }
}

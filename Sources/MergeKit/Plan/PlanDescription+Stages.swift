extension PlanDescription {
    /// A planned recipe file (`--dry-run` of a multi-stage recipe): the work directory, then every
    /// stage — what it is, its role, where it goes, what it reads — with its plan (`text(_:)`).
    public static func text(_ staged: StagedPlan) -> String {
        var lines: [String] = []
        let count = staged.stages.count
        lines.append("recipe: \(staged.file.path), \(count) stage\(count == 1 ? "" : "s"); output: \(staged.output)")
        lines.append("work directory: " + workDescription(staged))
        for (s, stage) in staged.stages.enumerated() {
            lines.append("")
            lines.append("# stage \(s + 1) of \(count): \(stage.stage.label), \(roleDescription(stage))")
            if !stage.stage.dependencies.isEmpty {
                let read = stage.stage.dependencies.map { staged.stages[$0].stage.name ?? "?" }.map { "\"\($0)\"" }.joined(separator: ", ")
                lines.append("reads \(read): planned on their planned layout; values checked when it runs")
            }
            for (i, plan) in stage.plans.enumerated() {
                if stage.plans.count > 1 {
                    lines.append("## point \(i): " + stage.points[i].map { "\($0.name) = \($0.value)" }.joined(separator: ", "))
                }
                // Already escaped, line by line (escaping again changes nothing).
                lines += text(plan).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            }
        }
        return TerminalText.lines(lines)
    }

    /// The same as JSON (`--dry-run --json`):
    ///
    ///     {"recipe": …, "output": …, "work_directory": {"path": … | null, "temporary": …, "keep": …},
    ///      "stages": [{"name": … | null, "line": …, "kind": "document" | "adapter", "role": …,
    ///                  "location": …, "reads": [names], "plans": [<json(plan)>, …]}, …]}
    public static func json(_ staged: StagedPlan) -> JSONValue {
        let stages: [JSONValue] = staged.stages.map { stage in
            var members = [
                JSONMember("name", stage.stage.name.map { .string($0) } ?? .null),
                JSONMember("line", .int(stage.stage.line)),
                JSONMember("kind", .string(stage.stage.kind == .document(stage.stage.document) ? "document" : "adapter")),
                JSONMember("role", .string(stage.role.rawValue)),
                JSONMember("location", .string(stage.location)),
                JSONMember("reads", .array(stage.stage.dependencies.map { .string(staged.stages[$0].stage.name ?? "") })),
            ]
            if case .adapter(let model, let adapter) = stage.stage.kind {
                members.append(JSONMember("model", .string(model)))
                members.append(JSONMember("adapter", .string(adapter)))
            }
            members.append(JSONMember("plans", .array(stage.plans.enumerated().map { i, plan in
                var plan = json(plan)
                if stage.plans.count > 1, case .object(var planMembers) = plan {
                    planMembers.append(JSONMember("sweep", .object(stage.points[i].map { JSONMember($0.name, $0.value.json) })))
                    plan = .object(planMembers)
                }
                return plan
            })))
            return .object(members)
        }
        return .object([
            JSONMember("recipe", .string(staged.file.path)),
            JSONMember("output", .string(staged.output)),
            JSONMember("work_directory", .object([
                JSONMember("path", staged.workDirectory.path.map { .string($0) } ?? .null),
                JSONMember("temporary", .bool(staged.workDirectory.path == nil)),
                JSONMember("keep", .bool(staged.workDirectory.keep)),
                JSONMember("used", .bool(!staged.isSingle)),
            ])),
            JSONMember("stages", .array(stages)),
        ])
    }

    private static func workDescription(_ staged: StagedPlan) -> String {
        if staged.isSingle { return "none (no intermediates)" }
        guard let path = staged.workDirectory.path else {
            return "a temporary directory beside \(staged.output), removed at the end (<work directory> below)"
        }
        return path + (staged.workDirectory.keep ? ", intermediates kept" : ", intermediates removed at the end")
    }

    private static func roleDescription(_ stage: StagedPlan.Stage) -> String {
        switch stage.role {
        case .output: return "the output"
        case .intermediate: return "an intermediate, written to \(stage.location)"
        case .unused: return "not needed by the output: checked, not made"
        }
    }
}

/// The plots of an evaluated sweep, written into its directory: for every swept parameter, the
/// score against it — one line per task and the average (emphasized), the selected point marked
/// — through the selected point (the other parameters held at its values), as
/// `scores-NAME.svg` (and `.png` when asked).
enum SweepPlots {
    /// One plot's data: the parameter, its values through the selected point, each task's
    /// accuracy and the average there, and where the selected point is.
    struct Slice: Equatable {
        let parameter: String
        let x: [Double]
        /// Per task, then the average last.
        let series: [(name: String, y: [Double])]
        let selectedX: Double
        let selectedY: Double

        static func == (a: Slice, b: Slice) -> Bool {
            a.parameter == b.parameter && a.x == b.x && a.selectedX == b.selectedX && a.selectedY == b.selectedY
                && a.series.map(\.name) == b.series.map(\.name) && a.series.map(\.y) == b.series.map(\.y)
        }
    }

    /// The slices through `selected`: one per numeric parameter that takes several values, the
    /// points ordered by its value.
    static func slices(_ evaluation: SweepEvaluation, scores: [PointScores], points: [MergeRun.Point], selected: Int) -> [Slice] {
        guard points.indices.contains(selected) else { return [] }
        let chosen = points[selected]
        var slices: [Slice] = []
        for (axis, entry) in chosen.enumerated() {
            // The points that differ from the selected one in this parameter only.
            let line = points.indices.filter { i in
                points[i].count == chosen.count && points[i].indices.allSatisfy { $0 == axis || points[i][$0].value == chosen[$0].value }
            }
            let xs = line.map { Double(points[$0][axis].value) }
            guard line.count >= 2, xs.allSatisfy({ $0 != nil }) else { continue }
            let order = line.indices.sorted { xs[$0]! < xs[$1]! }
            let members = order.map { line[$0] }
            var series = evaluation.tasks.indices.map { t in (name: evaluation.tasks[t].name, y: members.map { scores[$0].results[t].accuracy }) }
            series.append((name: "average", y: members.map { scores[$0].averageAccuracy }))
            slices.append(Slice(parameter: entry.name, x: order.map { xs[$0]! }, series: series,
                                selectedX: Double(entry.value)!, selectedY: scores[selected].averageAccuracy))
        }
        return slices
    }

    /// The file name of a parameter's plot (letters, digits, `_` and `-` kept).
    static func fileName(_ parameter: String, extension ext: String) -> String {
        let safe = String(parameter.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
        return "scores-\(safe).\(ext)"
    }

    /// Writes every slice's plot into `sweep`; returns the names written (relative to it).
    static func write(_ evaluation: SweepEvaluation, scores: [PointScores], points: [MergeRun.Point], selected: Int,
                      into sweep: SweepOutput) throws(MergeKitError) -> [String] {
        []
    }
}

/// The plots of an evaluated sweep, written into its directory: for every swept parameter, the
/// score against it — one line per task and the average (emphasized), the selected point marked
/// — through the selected point (the other parameters held at its values), as
/// `scores-NAME.svg` (and `.png` when asked).
enum SweepPlots {
    /// One plot's data: the parameter, its values through the selected point, each task's
    /// accuracy and the average there, and where the selected point is.
    struct Slice {
        let parameter: String
        /// The other swept parameters, held at the selected point's values.
        let held: [(name: String, value: String)]
        let x: [Double]
        /// Per task, then the average last.
        let series: [(name: String, y: [Double])]
        let selectedX: Double
        let selectedY: Double
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
            // The mark sits on the line the rule chose by (the average for worst and loss).
            var markedY = scores[selected].averageAccuracy
            if case .task(let name) = evaluation.select, let t = evaluation.tasks.firstIndex(where: { $0.name == name }) {
                markedY = scores[selected].results[t].accuracy
            }
            let held = chosen.indices.filter { $0 != axis }.map { chosen[$0] }
            slices.append(Slice(parameter: entry.name, held: held, x: order.map { xs[$0]! }, series: series,
                                selectedX: Double(entry.value)!, selectedY: markedY))
        }
        return slices
    }

    /// The file name of a parameter's plot (letters, digits, `_` and `-` kept).
    static func fileName(_ parameter: String, extension ext: String) -> String {
        let safe = String(parameter.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
        return "scores-\(safe).\(ext)"
    }

    /// The chart of one slice: each task's accuracy and the average (emphasized, drawn last)
    /// against the parameter, the selected point marked.
    static func chart(_ slice: Slice, method: String) -> LineChart {
        func symbol(_ name: String) -> String { name == "lambda" ? "λ" : name }
        let series = slice.series.enumerated().map { i, line in
            LineChart.Series(name: line.name, x: slice.x, y: line.y, emphasized: i == slice.series.count - 1)
        }
        let label = "selected: " + String(format: "%.1f %%", slice.selectedY * 100)
        let axis = slice.parameter == "lambda" ? "λ (scaling coefficient)" : slice.parameter
        let held = slice.held.isEmpty ? "" : ", at " + slice.held.map { "\(symbol($0.name)) = \($0.value)" }.joined(separator: ", ")
        return LineChart(title: "\(method): accuracy against \(symbol(slice.parameter))\(held)", xLabel: axis, yLabel: "accuracy", series: series,
                         mark: LineChart.Mark(x: slice.selectedX, y: slice.selectedY, label: label), yRange: 0...1)
    }

    /// Writes every slice's plot into `sweep` (and its PNG when the evaluation asks); returns
    /// the names written (relative to it).
    static func write(_ evaluation: SweepEvaluation, scores: [PointScores], points: [MergeRun.Point], selected: Int, method: String,
                      into sweep: SweepOutput) throws(MergeKitError) -> [String] {
        var written: [String] = []
        for slice in slices(evaluation, scores: scores, points: points, selected: selected) {
            let name = fileName(slice.parameter, extension: "svg")
            try sweep.write(Array(chart(slice, method: method).svg().utf8), named: name)
            written.append(name)
            if evaluation.png {
                let png = fileName(slice.parameter, extension: "png")
                try PlotFile.renderTagged(sweep.stagedPath(of: FileSystem.join(sweep.path, name)), to: sweep.stagedFile(named: png),
                                          for: FileSystem.join(sweep.path, png))
                written.append(png)
            }
        }
        return written
    }
}

import Foundation
@testable import MergeKit

/// The fixed pictures the plot tests draw: a sweep's chart (three tasks and their average over
/// λ = 0, 0.1, …, 1, the best average marked) and analyze's heat maps for four inputs, one of them
/// with an all-zero task vector (undefined entries) and a name too long for its space.
enum PlotSamples {
    static let lambdas = (0...10).map { Double($0) / 10 }

    /// Accuracy-like curves: a + b·λ − c·λ², rounded to 4 decimals (exact inputs, no libm).
    static let tasks: [(name: String, a: Double, b: Double, c: Double)] = [
        ("MNIST", 0.48, 1.30, 1.05), ("SVHN", 0.32, 1.10, 0.95), ("EuroSAT", 0.41, 0.70, 0.80),
    ]

    static func accuracy(_ task: (name: String, a: Double, b: Double, c: Double), _ lambda: Double) -> Double {
        ((task.a + task.b * lambda - task.c * lambda * lambda) * 10_000).rounded() / 10_000
    }

    static var sweepSeries: [LineChart.Series] {
        let perTask = tasks.map { task in
            LineChart.Series(name: task.name, x: lambdas, y: lambdas.map { accuracy(task, $0) })
        }
        let average = lambdas.indices.map { i in perTask.map { $0.y[i] }.reduce(0, +) / Double(perTask.count) }
        return perTask + [LineChart.Series(name: "average", x: lambdas, y: average, emphasized: true)]
    }

    /// The index of the best average (the first of equals).
    static var bestIndex: Int {
        let average = sweepSeries.last!.y
        return average.indices.max { average[$0] < average[$1] || (average[$0] == average[$1] && $0 > $1) }!
    }

    static var sweepChart: LineChart {
        let series = sweepSeries, best = bestIndex
        let y = series.last!.y[best]
        return LineChart(title: "Task arithmetic: accuracy against λ", xLabel: "λ (scaling coefficient)", yLabel: "accuracy",
                         series: series, mark: .init(x: lambdas[best], y: y, label: String(format: "best: λ = %.1f, %.3f", lambdas[best], y)),
                         yRange: 0...1)
    }

    static let labels = ["[0] mnist", "[1] svhn", "[2] eurosat_rgb_64px_finetuned_checkpoint", "[3] zero"]

    static let cosines: [[Double]] = [
        [1, 0.31, -0.12, .nan],
        [0.31, 1, 0.08, .nan],
        [-0.12, 0.08, 1, .nan],
        [.nan, .nan, .nan, .nan],
    ]

    static let signConflicts: [[Double]] = [
        [0, 0.42, 0.51, .nan],
        [0.42, 0, 0.47, .nan],
        [0.51, 0.47, 0, .nan],
        [.nan, .nan, .nan, .nan],
    ]

    static var cosineMap: HeatMap {
        HeatMap(title: "Cosine similarity of task vectors", labels: labels, values: cosines, scale: .diverging(-1...1))
    }

    static var analysisFigure: Figure {
        Figure(title: "Task-vector analysis", panels: [
            .heatMap(cosineMap),
            .heatMap(HeatMap(title: "Sign conflicts", labels: labels, values: signConflicts, scale: .sequential(0...1))),
        ])
    }
}

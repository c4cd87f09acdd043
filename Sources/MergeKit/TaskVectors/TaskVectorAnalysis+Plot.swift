/// analyze's pictures: the pairwise cosines and sign conflicts as two heat maps side by side in
/// one SVG (`Figure`), labelled "[i] name" as the text report numbers its inputs.
extension TaskVectorAnalysis {
    /// The label of input `index` named `name` (a path or a Hugging Face id, as given): "[index]"
    /// and the name's last component without a checkpoint extension (`.safetensors`, `.bin`,
    /// `.pt`, `.pth`).
    public static func plotLabel(_ index: Int, _ name: String) -> String {
        var stem = FileSystem.lastComponent(of: FileSystem.trimmingTrailingSlashes(name))
        for ext in [".safetensors", ".bin", ".pth", ".pt"] where stem.lowercased().hasSuffix(ext) && stem.count > ext.count {
            stem = String(stem.dropLast(ext.count))
            break
        }
        return "[\(index)] \(stem)"
    }

    /// The two heat maps: cosine similarity on -1...1 (blue–white–red) and the sign-conflict
    /// fraction on 0...1. `names`: the inputs as the user gave them (default: their paths).
    public func figure(names: [String]? = nil) -> Figure {
        let given = names.flatMap { $0.count == inputs.count ? $0 : nil } ?? inputs
        let labels = given.enumerated().map { Self.plotLabel($0.offset, $0.element) }
        return Figure(title: "Task-vector analysis: cosine similarity and sign conflicts", panels: [
            .heatMap(HeatMap(title: "Cosine similarity of task vectors", labels: labels, values: cosines,
                             scale: .diverging(-1...1))),
            .heatMap(HeatMap(title: "Sign conflicts (share of shared non-zero entries)", labels: labels,
                             values: signConflicts, scale: .sequential(0...1))),
        ])
    }
}

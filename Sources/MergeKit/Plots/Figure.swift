/// Something a figure can place: it draws itself at the origin and says how large it is.
protocol PlotPanel: Sendable {
    var title: String { get }
    func draw(into canvas: inout SVGCanvas) -> (width: Double, height: Double)
}

/// Several charts in one SVG, side by side in rows (e.g. analyze's cosine and sign-conflict maps,
/// or a sweep's score against each of its parameters).
public struct Figure: Sendable {
    public enum Panel: Sendable {
        case line(LineChart)
        case heatMap(HeatMap)

        var panel: any PlotPanel {
            switch self {
            case .line(let chart): chart
            case .heatMap(let map): map
            }
        }
    }

    /// The document's title (shown by viewers; each panel draws its own title).
    public var title: String
    public var panels: [Panel]
    /// Panels per row (at least 1).
    public var columns: Int

    public init(title: String, panels: [Panel], columns: Int? = nil) {
        self.title = title
        self.panels = panels
        self.columns = max(1, columns ?? panels.count)
    }

    public func svg() -> String {
        var canvas = SVGCanvas()
        var y = 0.0, width = 0.0
        var index = 0
        for rowStart in stride(from: 0, to: panels.count, by: columns) {
            var x = 0.0, rowHeight = 0.0
            for panel in panels[rowStart..<min(panels.count, rowStart + columns)] {
                var inner = SVGCanvas()
                let size = panel.panel.draw(into: &inner)
                canvas.open("panel", transform: (x, y), attributes: "data-index=\"\(index)\"")
                for line in inner.lines { canvas.raw(line) }
                canvas.close()
                // Whole pixels, as a panel alone is (`SVGCanvas.document`).
                x += size.width.rounded(.up)
                rowHeight = max(rowHeight, size.height.rounded(.up))
                index += 1
            }
            width = max(width, x)
            y += rowHeight
        }
        return canvas.document(width: max(width, 1), height: max(y, 1), title: title)
    }
}

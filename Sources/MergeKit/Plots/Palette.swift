import Foundation

/// The plots' colours: the Okabe–Ito palette for lines (distinguishable with the common colour
/// vision deficiencies), black for the emphasized series, and the heat maps' colour scales.
enum Palette {
    static let text = "#222222"
    static let axis = "#444444"
    static let grid = "#e3e3e3"
    static let emphasized = "#000000"
    /// Undefined (NaN) heat-map cells.
    static let undefined = RGB(0xbdbdbd)

    /// Okabe & Ito's colours without black (the average's) and with yellow last (the weakest on
    /// white): blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow.
    static let lines = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442"]

    /// Dash patterns taking over once the colours run out: series i is drawn in colour
    /// i mod 7 with pattern i / 7 (mod 3), so 21 series are told apart by colour and pattern.
    static let dashes: [String?] = [nil, "7 4", "2 3"]

    static func lineStyle(_ index: Int) -> (color: String, dash: String?) {
        (lines[index % lines.count], dashes[(index / lines.count) % dashes.count])
    }

    struct RGB: Equatable {
        var r: Double, g: Double, b: Double

        init(_ hex: UInt32) {
            r = Double((hex >> 16) & 0xFF); g = Double((hex >> 8) & 0xFF); b = Double(hex & 0xFF)
        }

        init(r: Double, g: Double, b: Double) { self.r = r; self.g = g; self.b = b }

        var hex: String {
            func byte(_ v: Double) -> String {
                let n = Int(min(255, max(0, v.rounded())))
                let digits = String(n, radix: 16)
                return n < 16 ? "0" + digits : digits
            }
            return "#" + byte(r) + byte(g) + byte(b)
        }

        /// Relative luminance (sRGB, WCAG), for choosing black or white text on a cell.
        var luminance: Double {
            func linear(_ c: Double) -> Double {
                let s = c / 255
                return s <= 0.04045 ? s / 12.92 : Foundation.pow((s + 0.055) / 1.055, 2.4)
            }
            return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
        }
    }

    /// ColorBrewer's RdBu (reversed: blue for −1, white for 0, red for +1), 7 classes.
    static let diverging: [RGB] = [0x2166ac, 0x67a9cf, 0xd1e5f0, 0xf7f7f7, 0xfddbc7, 0xef8a62, 0xb2182b].map(RGB.init)
    /// ColorBrewer's YlGnBu (light yellow for the lower end to dark blue for the upper), 9
    /// classes: sequential, safe for the common colour vision deficiencies, and light at 0 so
    /// that a matrix's trivial diagonal (no conflicts with itself) stays quiet.
    static let sequential: [RGB] = [0xffffd9, 0xedf8b1, 0xc7e9b4, 0x7fcdbb, 0x41b6c4, 0x1d91c0, 0x225ea8, 0x253494, 0x081d58]
        .map(RGB.init)

    /// The colour at `t` ∈ [0, 1] (clamped) along `stops`, linearly interpolated in sRGB.
    static func color(_ stops: [RGB], at t: Double) -> RGB {
        let t = min(1, max(0, t.isFinite ? t : 0))
        let position = t * Double(stops.count - 1)
        let i = min(stops.count - 2, Int(position))
        let f = position - Double(i)
        let a = stops[i], b = stops[i + 1]
        return RGB(r: a.r + (b.r - a.r) * f, g: a.g + (b.g - a.g) * f, b: a.b + (b.b - a.b) * f)
    }

    /// Black or white, whichever reads better on `background`.
    static func textColor(on background: RGB) -> String {
        background.luminance > 0.30 ? "#111111" : "#ffffff"
    }
}

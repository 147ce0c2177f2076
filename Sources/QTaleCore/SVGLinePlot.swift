import Foundation

/// A dependency-free SVG line chart: a few series of (x, y) points, optional horizontal reference lines,
/// axis ticks, axis labels, a legend and a short label next to each point.
///
/// It exists so result files (θ sweeps, benchmarks) can come with a picture that opens in any browser,
/// without Python or a plotting library on the machine that ran them. The output is plain, well-formed
/// XML: every series is one `<polyline>`, every point one `<circle>` (with a `<title>` tooltip), every
/// reference line one dashed `<line>`, and all text is escaped.
public struct SVGLinePlot: Sendable {
    public struct Point: Sendable, Equatable {
        public var x: Double
        public var y: Double
        /// Drawn next to the point (e.g. `θ 0.35`); nil draws none.
        public var label: String?

        public init(x: Double, y: Double, label: String? = nil) {
            self.x = x
            self.y = y
            self.label = label
        }
    }

    public struct Series: Sendable {
        public var name: String
        /// Joined in this order (not sorted), so a curve traced by a parameter keeps its path.
        public var points: [Point]
        /// A CSS colour; nil takes the palette colour of the series' index.
        public var color: String?

        public init(name: String, points: [Point], color: String? = nil) {
            self.name = name
            self.points = points
            self.color = color
        }
    }

    /// A horizontal line across the plot at `y` (e.g. the accuracy of the model without routing).
    public struct ReferenceLine: Sendable {
        public var name: String
        public var y: Double
        public var color: String?

        public init(name: String, y: Double, color: String? = nil) {
            self.name = name
            self.y = y
            self.color = color
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series] = []
    public var referenceLines: [ReferenceLine] = []
    /// Axis ranges; nil fits the data (and reference lines), widened to whole tick steps.
    public var xRange: ClosedRange<Double>?
    public var yRange: ClosedRange<Double>?
    public var width = 760
    public var height = 480

    /// Tableau 10: distinguishable and readable in grey scale order.
    public static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    public init(title: String, xLabel: String, yLabel: String) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
    }

    /// The colour series `index` is drawn in.
    public func color(ofSeries index: Int) -> String {
        series[index].color ?? Self.palette[index % Self.palette.count]
    }

    /// The SVG document.
    public func render() -> String {
        let left = 72.0, right = 190.0, top = 48.0, bottom = 58.0
        let plotWidth = Double(width) - left - right, plotHeight = Double(height) - top - bottom
        let xs = series.flatMap { $0.points.map(\.x) }.filter(\.isFinite)
        let ys = (series.flatMap { $0.points.map(\.y) } + referenceLines.map(\.y)).filter(\.isFinite)
        let xTicks = Self.ticks(xRange ?? Self.padded(Self.span(xs)), fixed: xRange != nil)
        let yTicks = Self.ticks(yRange ?? Self.padded(Self.span(ys)), fixed: yRange != nil)
        let (x0, x1) = (xTicks.range.lowerBound, xTicks.range.upperBound)
        let (y0, y1) = (yTicks.range.lowerBound, yTicks.range.upperBound)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotWidth }
        func py(_ y: Double) -> Double { top + (y1 - y) / (y1 - y0) * plotHeight }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }
        let e = Self.escape

        var svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(n(left))" y="26" font-size="14">\(e(title))</text>

            """
        // Grid and ticks.
        svg += "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n"
        for t in xTicks.values { svg += "<line x1=\"\(n(px(t)))\" y1=\"\(n(top))\" x2=\"\(n(px(t)))\" y2=\"\(n(top + plotHeight))\"/>\n" }
        for t in yTicks.values { svg += "<line x1=\"\(n(left))\" y1=\"\(n(py(t)))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(py(t)))\"/>\n" }
        svg += "</g>\n"
        svg += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(plotWidth))\" height=\"\(n(plotHeight))\" fill=\"none\" stroke=\"black\"/>\n"
        for t in xTicks.values {
            svg += "<text x=\"\(n(px(t)))\" y=\"\(n(top + plotHeight + 16))\" text-anchor=\"middle\">\(Self.format(t, step: xTicks.step))</text>\n"
        }
        for t in yTicks.values {
            svg += "<text x=\"\(n(left - 6))\" y=\"\(n(py(t) + 4))\" text-anchor=\"end\">\(Self.format(t, step: yTicks.step))</text>\n"
        }
        svg += "<text x=\"\(n(left + plotWidth / 2))\" y=\"\(n(Double(height) - 16))\" text-anchor=\"middle\" font-size=\"12\">\(e(xLabel))</text>\n"
        let yMid = top + plotHeight / 2
        svg += "<text x=\"18\" y=\"\(n(yMid))\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 18 \(n(yMid)))\">\(e(yLabel))</text>\n"

        // Reference lines, then series on top.
        for (i, line) in referenceLines.enumerated() where line.y.isFinite && line.y >= y0 && line.y <= y1 {
            let color = line.color ?? Self.palette[i % Self.palette.count]
            svg += "<line x1=\"\(n(left))\" y1=\"\(n(py(line.y)))\" x2=\"\(n(left + plotWidth))\" y2=\"\(n(py(line.y)))\" stroke=\"\(e(color))\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"><title>\(e(line.name))</title></line>\n"
        }
        for (i, s) in series.enumerated() {
            let color = e(color(ofSeries: i))
            let points = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            svg += "<g>\n<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\" points=\"\(points.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " "))\"><title>\(e(s.name))</title></polyline>\n"
            for p in points {
                let tip = (p.label.map { $0 + ": " } ?? "") + "(\(Self.format(p.x, step: xTicks.step / 100)), \(Self.format(p.y, step: yTicks.step / 100)))"
                svg += "<circle cx=\"\(n(px(p.x)))\" cy=\"\(n(py(p.y)))\" r=\"3\" fill=\"\(color)\"><title>\(e(tip))</title></circle>\n"
            }
            // Labels: consecutive points drawn at the same spot share one label, "first … last"; a label
            // that would overlap the previous one goes below its point instead of above.
            var previous: (x: Double, y: Double, width: Double)? = nil
            var k = 0
            while k < points.count {
                var end = k
                while end + 1 < points.count, abs(px(points[end + 1].x) - px(points[k].x)) < 1, abs(py(points[end + 1].y) - py(points[k].y)) < 1 {
                    end += 1
                }
                let labels = points[k...end].compactMap(\.label)
                if let first = labels.first {
                    let text = labels.count > 1 ? "\(first) … \(labels.last!)" : first
                    let x = px(points[k].x) + 4, width = 5.5 * Double(text.count)
                    var y = py(points[k].y) - 5
                    if let p = previous, abs(p.y - y) < 10, x < p.x + p.width, p.x < x + width { y += 17 }
                    previous = (x, y, width)
                    svg += "<text x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"9\" fill=\"\(color)\">\(e(text))</text>\n"
                }
                k = end + 1
            }
            svg += "</g>\n"
        }

        // Legend.
        var row = top + 6
        let legendX = left + plotWidth + 14
        for (i, s) in series.enumerated() {
            svg += "<line x1=\"\(n(legendX))\" y1=\"\(n(row))\" x2=\"\(n(legendX + 22))\" y2=\"\(n(row))\" stroke=\"\(e(color(ofSeries: i)))\" stroke-width=\"1.8\"/>\n"
            svg += "<text x=\"\(n(legendX + 28))\" y=\"\(n(row + 4))\">\(e(s.name))</text>\n"
            row += 18
        }
        for (i, line) in referenceLines.enumerated() {
            let color = line.color ?? Self.palette[i % Self.palette.count]
            svg += "<line x1=\"\(n(legendX))\" y1=\"\(n(row))\" x2=\"\(n(legendX + 22))\" y2=\"\(n(row))\" stroke=\"\(e(color))\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\n"
            svg += "<text x=\"\(n(legendX + 28))\" y=\"\(n(row + 4))\">\(e(line.name))</text>\n"
            row += 18
        }
        svg += "</svg>\n"
        return svg
    }

    /// Writes the document atomically.
    public func write(to path: String) throws {
        do {
            try Data(render().utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw QTaleError.io("cannot write '\(path)': \(error.localizedDescription)")
        }
    }

    /// `text` with the five XML special characters escaped, for element text and attribute values.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The smallest range holding `values` (a unit range around a single value; 0...1 when empty).
    static func span(_ values: [Double]) -> ClosedRange<Double> {
        guard let lo = values.min(), let hi = values.max() else { return 0...1 }
        if hi > lo { return lo...hi }
        let pad = lo == 0 ? 0.5 : abs(lo) * 0.05
        return (lo - pad)...(hi + pad)
    }

    /// `range` widened by 4% on each side, so points do not sit on the frame.
    static func padded(_ range: ClosedRange<Double>) -> ClosedRange<Double> {
        let pad = 0.04 * (range.upperBound - range.lowerBound)
        return (range.lowerBound - pad)...(range.upperBound + pad)
    }

    /// About five ticks at 1, 2 or 5 × 10^k steps. A fitted range is widened to whole steps; a fixed
    /// one is kept and gets the ticks inside it.
    public static func ticks(_ range: ClosedRange<Double>, fixed: Bool = false, target: Int = 5)
        -> (values: [Double], step: Double, range: ClosedRange<Double>) {
        var lo = range.lowerBound, hi = range.upperBound
        if !(hi > lo) { (lo, hi) = (span([lo]).lowerBound, span([lo]).upperBound) }
        let raw = (hi - lo) / Double(max(1, target))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * 0.999 } ?? 10 * magnitude
        let first = fixed ? ceil(lo / step - 1e-9) * step : floor(lo / step + 1e-9) * step
        let last = fixed ? floor(hi / step + 1e-9) * step : ceil(hi / step - 1e-9) * step
        var values: [Double] = []
        var k = 0.0
        while first + k * step <= last + step * 1e-6 {
            values.append(first + k * step)
            k += 1
        }
        return (values, step, fixed ? lo...hi : first...max(last, first + step))
    }

    /// A tick value with as many decimals as its step needs.
    static func format(_ value: Double, step: Double) -> String {
        let decimals = step > 0 ? max(0, min(6, Int(ceil(-log10(step) - 1e-9)))) : 3
        let text = String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }
}

import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import QTaleCore
import QTaleEval
import XCTest

/// The SVG plot is well-formed XML with one polyline per series, and the sweep's plot has one series
/// and one dashed dense line per task.
final class SVGLinePlotTests: XCTestCase {
    /// Counts elements (and dashed lines) while parsing; a parse error fails.
    final class Census: NSObject, XMLParserDelegate {
        var elements: [String: Int] = [:]
        var dashedLines = 0
        var text = ""
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            elements[name, default: 0] += 1
            if name == "line" && attributes["stroke-dasharray"] != nil { dashedLines += 1 }
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
    }

    func parse(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> Census {
        let parser = XMLParser(data: Data(svg.utf8))
        let census = Census()
        parser.delegate = census
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))\n\(svg.prefix(2000))", file: file, line: line)
        return census
    }

    func testWellFormedWithOnePolylinePerSeries() {
        var plot = SVGLinePlot(title: "acc <against> ratio & more", xLabel: "execution ratio", yLabel: "acc (%)")
        plot.series = [
            SVGLinePlot.Series(name: "arc_easy \"dev\"", points: [.init(x: 1, y: 45, label: "θ 0.1"), .init(x: 1, y: 45, label: "θ 0.5"),
                                                               .init(x: 0.9, y: 50, label: "θ 0.8"), .init(x: 0.38, y: 20, label: "θ 0.9")]),
            SVGLinePlot.Series(name: "piqa", points: [.init(x: 0.95, y: 60), .init(x: .nan, y: 3), .init(x: 0.5, y: 55)]),
            SVGLinePlot.Series(name: "empty", points: []),
        ]
        plot.referenceLines = [SVGLinePlot.ReferenceLine(name: "dense arc_easy", y: 45), SVGLinePlot.ReferenceLine(name: "dense piqa", y: 61)]
        let census = parse(plot.render())
        XCTAssertEqual(census.elements["svg"], 1)
        XCTAssertEqual(census.elements["polyline"], 3)
        XCTAssertEqual(census.elements["circle"], 6, "non-finite points are left out")
        XCTAssertEqual(census.dashedLines, 4, "each reference line, and its legend entry")
        XCTAssertTrue(census.text.contains("acc <against> ratio & more"), "text is escaped, not lost")
        XCTAssertTrue(census.text.contains("θ 0.1 … θ 0.5"), "coincident points share a label")
        XCTAssertTrue(census.text.contains("0.4"), "x ticks: \(census.text)")
    }

    func testTicksAreRoundNumbersCoveringTheData() {
        let t = SVGLinePlot.ticks(0.38...1.0)
        XCTAssertEqual(t.step, 0.2, accuracy: 1e-12)
        XCTAssertEqual(t.values.first!, 0.2, accuracy: 1e-12)
        XCTAssertEqual(t.values.last!, 1.0, accuracy: 1e-12)
        let fixed = SVGLinePlot.ticks(0.35...1.02, fixed: true)
        XCTAssertEqual(fixed.range, 0.35...1.02)
        XCTAssertGreaterThanOrEqual(fixed.values.first!, 0.35)
        XCTAssertLessThanOrEqual(fixed.values.last!, 1.02)
        // A single value still gets an axis.
        XCTAssertGreaterThan(SVGLinePlot.ticks(45...45).values.count, 1)
        XCTAssertEqual(SVGLinePlot.escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;")
    }

    func testSweepPlotHasOneSeriesAndOneDenseLinePerTask() {
        func point(_ θ: Double?, _ accs: [Double], _ ratios: [Double]) -> SweepPoint {
            let tasks = zip(accs, ratios).enumerated().map { i, v in
                TaskScore(task: ["arc_easy", "piqa"][i], acc: v.0, acc_norm: v.0, n: 20, execution_ratio: v.1, flops_ratio: v.1,
                          tokens_processed: 100, seconds: 1)
            }
            return SweepPoint(threshold: θ, acc: accs.reduce(0, +) / 2, acc_norm: 0, execution_ratio: ratios.reduce(0, +) / 2, tasks: tasks)
        }
        let run = SweepRun(model: "/m/model.gguf", backend: "cpu", device: "cpu", threads: 2, routers: "random seed 1", always_on_blocks: 2,
                           always_on_positions: 2, context_length: 2048,
                           tasks: [.init(task: "arc_easy", data: "a", n: 20), .init(task: "piqa", data: "p", n: 20)], metric: "acc")
        let sweep = ThresholdSweep(run: run, dense: point(nil, [0.45, 0.6], [1, 1]),
                                   points: [point(0.5, [0.45, 0.6], [1, 1]), point(0.8, [0.5, 0.55], [0.9, 0.85]), point(0.9, [0.2, 0.5], [0.38, 0.4])])
        let census = parse(sweep.plot(metric: .acc).render())
        XCTAssertEqual(census.elements["polyline"], 2)
        XCTAssertEqual(census.dashedLines, 4)
        XCTAssertTrue(census.text.contains("θ 0.8"))
        XCTAssertTrue(census.text.contains("model.gguf"))
    }
}

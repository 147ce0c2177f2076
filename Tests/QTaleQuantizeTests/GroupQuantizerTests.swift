import QTaleCore
@testable import QTaleQuantize
import XCTest

/// The group quantizer and RTN against a float64 brute-force reference of method.md §3 on the stored grid.
final class GroupQuantizerTests: XCTestCase {
    /// The reference: the formula's parameters with the scale rounded to binary16 first, and the code of
    /// the nearest stored grid point found by trying every code.
    struct Reference {
        let scale: Float16, offset: Float16, zero: Int

        init(_ values: ArraySlice<Float>, bits: Int, shrink: Double = 1, includeZero: Bool = false, clip: Double = .infinity) {
            let maxq = Double((1 << bits) - 1)
            var lo = values.map { min(max(Double($0), -clip), clip) }.min()!
            var hi = values.map { min(max(Double($0), -clip), clip) }.max()!
            if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
            scale = Float16(shrink * max(hi - lo, 1e-5) / maxq)
            zero = Int(min(max(-(lo / Double(scale)).rounded(.toNearestOrEven), 0), maxq))
            offset = Float16(-Double(zero) * Double(scale))
        }

        func grid(_ code: Int) -> Double { Double(scale) * Double(code) + Double(offset) }

        /// Every code whose grid point is (within rounding) nearest to the clipped value.
        func nearestCodes(_ w: Float, bits: Int, clip: Double = .infinity) -> Set<Int> {
            let v = min(max(Double(w), -clip), clip)
            let distances = (0..<(1 << bits)).map { abs(grid($0) - v) }
            let best = distances.min()!
            return Set(distances.indices.filter { distances[$0] <= best + 1e-9 * Double(scale) })
        }
    }

    func testParametersAndCodesMatchTheFloat64Reference() throws {
        var generator = SeededGenerator(seed: 1)
        var formulaAgreements = 0, total = 0
        for bits in [3, 4, 8] {
            for (shrink, includeZero) in [(1.0, false), (0.9, false), (1.0, true), (0.95, true)] {
                let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: bits, groupSize: 64),
                                                   rangeShrink: Float(shrink), rangeIncludesZero: includeZero)
                for trial in 0..<40 {
                    // Mixed signs, all-positive groups (zero clamps to 0), tiny and constant groups.
                    let spread: Float = [0.02, 1, 40, 1e-7][trial % 4]
                    let shift: Float = trial % 5 == 0 ? 3 * spread : 0
                    let values = TestMatrices.gaussian(64, &generator).map { $0 * spread + shift }
                    let reference = Reference(values[...], bits: bits, shrink: shrink, includeZero: includeZero)
                    let p = quantizer.parameters(for: values)
                    XCTAssertEqual(p.scale, reference.scale, "w\(bits) β\(shrink) trial \(trial)")
                    XCTAssertEqual(p.zero, reference.zero, "w\(bits) β\(shrink) trial \(trial)")
                    XCTAssertEqual(p.offset, reference.offset, "w\(bits) β\(shrink) trial \(trial)")
                    for w in values {
                        let code = p.code(for: w)
                        XCTAssertTrue(reference.nearestCodes(w, bits: bits).contains(code), "w\(bits): \(w) → code \(code)")
                        XCTAssertEqual(p.dequantize(code), Float(p.scale) * Float(code) + Float(p.offset))
                        let formula = min(max(Int((Double(w) / Double(p.scale)).rounded(.toNearestOrEven)) + p.zero, 0), (1 << bits) - 1)
                        formulaAgreements += formula == code ? 1 : 0
                        total += 1
                    }
                }
            }
        }
        // The stored grid only moves near-ties: the formula's codes agree almost everywhere.
        XCTAssertGreaterThan(Double(formulaAgreements) / Double(total), 0.98)
    }

    func testRangeShrinkKeepsTheMinimumAndIncludeZeroWidensTheRange() throws {
        let format = try QuantizationFormat(bits: 3, groupSize: 32)
        let values: [Float] = (0..<32).map { -1 + 3 * Float($0) / 31 } // -1 ... 2
        let plain = try GroupQuantizer(format: format).parameters(for: values)
        let shrunk = try GroupQuantizer(format: format, rangeShrink: 0.9).parameters(for: values)
        XCTAssertLessThan(shrunk.scale, plain.scale)
        // The minimum stays on the grid (up to the zero point's rounding); the top is given up.
        XCTAssertEqual(shrunk.dequantize(0), -1, accuracy: Float(shrunk.scale) / 2 + 1e-3)
        XCTAssertLessThan(shrunk.dequantize(7), plain.dequantize(7) - 0.3)
        let positive: [Float] = (0..<32).map { 1 + Float($0) / 31 }  // 1 ... 2
        XCTAssertEqual(try GroupQuantizer(format: format, rangeIncludesZero: true).parameters(for: positive).dequantize(0), 0)
        XCTAssertEqual(try GroupQuantizer(format: format).parameters(for: positive).zero, 0)
    }

    func testClippingClampsBeforeTheRange() throws {
        let quantizer = try GroupQuantizer(format: QuantizationFormat(bits: 4, groupSize: 32))
        var generator = SeededGenerator(seed: 2)
        var values = TestMatrices.gaussian(32, &generator)
        values[3] = 25 // an outlier the clip removes
        let p = quantizer.parameters(for: values, clip: 2)
        let reference = Reference(values[...], bits: 4, clip: 2)
        XCTAssertEqual(p.scale, reference.scale)
        XCTAssertEqual(p.offset, reference.offset)
        for w in values { XCTAssertTrue(reference.nearestCodes(w, bits: 4, clip: 2).contains(p.code(for: w))) }
        XCTAssertLessThanOrEqual(p.quantize(25), 2 + Float(p.scale))
    }

    /// K = 576 with groups of 128: four full groups and a short last one of 64 columns, whose range comes
    /// from its own 64 values only; every packed weight equals the reference's dequantized value exactly.
    func testRTNWithAShortLastGroupMatchesThePackedWeights() throws {
        var generator = SeededGenerator(seed: 3)
        let rows = 7, columns = 576
        for bits in [3, 4, 8] {
            let format = try QuantizationFormat(bits: bits, groupSize: 128)
            var w = TestMatrices.gaussian(rows * columns, &generator).map { $0 * 0.05 }
            for r in 0..<rows { for c in 512..<576 { w[r * columns + c] *= 40 } } // the short group is wider
            let clips = (0..<(rows * 5)).map { Float(0.02 + 0.3 * Double($0 % 5)) }
            for clip in [nil, clips] {
                let quantizer = try GroupQuantizer(format: format)
                let packed = try RoundToNearest.quantize(w, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clip)
                XCTAssertEqual(packed.groupsPerRow, 5)
                let fake = try RoundToNearest.fakeQuantize(w, rows: rows, columns: columns, quantizer: quantizer, clipMaxima: clip)
                XCTAssertEqual(fake, packed.dequantized())
                for r in 0..<rows {
                    for g in 0..<5 {
                        let start = g * 128, end = min(columns, start + 128)
                        let bound = Double(clip?[r * 5 + g] ?? .infinity)
                        let reference = Reference(w[(r * columns + start) ..< (r * columns + end)], bits: bits, clip: bound)
                        XCTAssertEqual(packed.scale(row: r, group: g), reference.scale)
                        XCTAssertEqual(packed.offset(row: r, group: g), reference.offset)
                        for c in start..<end {
                            let code = packed.code(row: r, column: c)
                            XCTAssertTrue(reference.nearestCodes(w[r * columns + c], bits: bits, clip: bound).contains(code))
                            XCTAssertEqual(packed.weight(row: r, column: c),
                                           Float(reference.scale) * Float(code) + Float(reference.offset))
                        }
                    }
                }
            }
        }
    }

    /// The byte-code packer agrees with `PackedMatrix.setCode` bit for bit, including a ragged last pack.
    func testCodePackingMatchesSetCode() throws {
        var generator = SeededGenerator(seed: 4)
        for bits in [3, 4, 8] {
            let format = try QuantizationFormat(bits: bits, groupSize: 32)
            let rows = 3, columns = 100
            var builder = CodeMatrixBuilder(format: format, rows: rows, columns: columns)
            var expected = try PackedMatrix(format: format, rows: rows, columns: columns)
            for r in 0..<rows {
                for c in 0..<columns {
                    let code = Int.random(in: 0...format.maxCode, using: &generator)
                    builder.codes[r * columns + c] = UInt8(code)
                    expected.setCode(code, row: r, column: c)
                }
            }
            XCTAssertEqual(try builder.packed().codes, expected.codes, "w\(bits)")
        }
    }
}

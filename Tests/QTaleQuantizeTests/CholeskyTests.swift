import QTaleCore
import QTaleQuantize
import XCTest

/// Cholesky factor, inverse and GPTQ's upper factor of the inverse against textbook float64 loops.
final class CholeskyTests: XCTestCase {
    static func referenceLower(_ a: [Double], n: Int) -> [Double] {
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var d = a[j * n + j]
            for k in 0..<j { d -= l[j * n + k] * l[j * n + k] }
            l[j * n + j] = d.squareRoot()
            for i in (j + 1)..<max(j + 1, n) {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / l[j * n + j]
            }
        }
        return l
    }

    /// Gauss–Jordan inverse.
    static func referenceInverse(_ a: [Double], n: Int) -> [Double] {
        var m = a, inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inv[i * n + i] = 1 }
        for c in 0..<n {
            let p = m[c * n + c]
            for j in 0..<n { m[c * n + j] /= p; inv[c * n + j] /= p }
            for r in 0..<n where r != c {
                let f = m[r * n + c]
                if f == 0 { continue }
                for j in 0..<n { m[r * n + j] -= f * m[c * n + j]; inv[r * n + j] -= f * inv[c * n + j] }
            }
        }
        return inv
    }

    static func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).map { abs($0 - $1) }.max()!
    }

    func testFactorInverseAndUpperFactorMatchTheReference() throws {
        var generator = SeededGenerator(seed: 10)
        // Sizes around the 4-row tiles, 8-wide vectors and 16-column panels, and one with several panels.
        for n in [1, 3, 5, 17, 37, 130] {
            let a = TestMatrices.spd(n, shift: 0.1, &generator)
            let scale = a.map(abs).max()!
            let l = try Cholesky.lower(a, n: n)
            let referenceL = Self.referenceLower(a, n: n)
            XCTAssertLessThan(Self.maxDifference(l, referenceL), 1e-10 * scale.squareRoot(), "L, n = \(n)")
            for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { XCTAssertEqual(l[i * n + j], 0) } }

            let referenceInverse = Self.referenceInverse(a, n: n)
            let inverseScale = referenceInverse.map(abs).max()!
            let inverse = try Cholesky.inverse(fromLower: l, n: n)
            XCTAssertLessThan(Self.maxDifference(inverse, referenceInverse), 1e-9 * inverseScale, "inverse, n = \(n)")

            // torch: cholesky(cholesky_inverse(cholesky(A)), upper: true) = (lower factor of A⁻¹)ᵀ.
            let lowerOfInverse = Self.referenceLower(referenceInverse, n: n)
            var referenceU = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { referenceU[i * n + j] = lowerOfInverse[j * n + i] } }
            let u = try Cholesky.upperFactorOfInverse(a, n: n)
            XCTAssertLessThan(Self.maxDifference(u, referenceU), 1e-9 * inverseScale.squareRoot(), "U, n = \(n)")
            for i in 0..<n { for j in 0..<i { XCTAssertEqual(u[i * n + j], 0) } }
        }
    }

    func testLowerInverseIsTheInverse() throws {
        var generator = SeededGenerator(seed: 11)
        let n = 70
        let l = try Cholesky.lower(TestMatrices.spd(n, shift: 0.5, &generator), n: n)
        let m = try Cholesky.invertLower(l, n: n)
        let product = TestMatrices.multiply(l, m, m: n, k: n, n: n)
        for i in 0..<n { for j in 0..<n { XCTAssertEqual(product[i * n + j], i == j ? 1 : 0, accuracy: 1e-11) } }
    }

    func testAMatrixThatIsNotPositiveDefiniteIsRejected() throws {
        var a = [Double](repeating: 0, count: 9)
        a[0] = 1; a[4] = 1; a[8] = -1
        XCTAssertThrowsError(try Cholesky.lower(a, n: 3)) { error in
            XCTAssertTrue("\(error)".contains("not positive definite"), "\(error)")
        }
        XCTAssertThrowsError(try Cholesky.upperFactorOfInverse(a, n: 3))
        XCTAssertThrowsError(try Cholesky.lower([1, 2, 3], n: 2))
    }

    /// The size GPTQ meets at down_proj runs in well under a second.
    func testFactorOfASizeDownProjIsFast() throws {
        var generator = SeededGenerator(seed: 12)
        let n = 1536
        let b = TestMatrices.gaussian(n * 64, &generator)
        // A = BBᵀ/64 + I without the O(n³) reference product: rank-64 plus identity.
        var a = [Double](repeating: 0, count: n * n)
        b.withUnsafeBufferPointer { b in
            for i in 0..<n { for j in 0...i {
                var s = 0.0
                for k in 0..<64 { s += Double(b[i * 64 + k]) * Double(b[j * 64 + k]) }
                a[i * n + j] = s / 64; a[j * n + i] = s / 64
            } }
        }
        for i in 0..<n { a[i * n + i] += 1 }
        let start = ContinuousClock.now
        let u = try Cholesky.upperFactorOfInverse(a, n: n)
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        print("upperFactorOfInverse n = \(n): \(seconds) s")
        XCTAssertLessThan(seconds, 5)
        // Spot check UᵀU·A = I on a few entries.
        for (i, j) in [(0, 0), (5, 700), (1535, 1535), (900, 3)] {
            var s = 0.0
            for k in 0..<n {
                var uu = 0.0 // (UᵀU)[i][k]
                for r in 0...min(i, k) { uu += u[r * n + i] * u[r * n + k] }
                s += uu * a[k * n + j]
            }
            XCTAssertEqual(s, i == j ? 1 : 0, accuracy: 1e-8)
        }
    }
}

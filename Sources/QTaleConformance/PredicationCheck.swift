import QTaleCore

/// Conformance for ``ComputeEngine/encodePredicated(on:_:)``, which per-op cases cannot cover: flags
/// made on the engine by ``Op/routerDecision`` gate regions of dependent ops, a clear flag leaves every
/// output of its region untouched, and ops after a region run unconditionally again.
public enum PredicationCheck {
    /// Runs the check on `engine`; returns what went wrong (empty when it passes).
    public static func failures(on engine: any ComputeEngine) throws -> [String] {
        var keep: [DeviceBuffer] = []
        func floats(_ values: [Float]) throws -> TensorView {
            let b = try engine.makeBuffer(values)
            keep.append(b)
            return b.view(.float32, rows: 1, columns: values.count)
        }
        var random = SeededGenerator(seed: 7)
        let n = 70
        func randomValues() -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &random) } }
        let x = randomValues(), y = randomValues(), before = randomValues()

        // Logits (skip, execute) → decisions [1, 0, 1] at θ = 0.5, made on the engine.
        let logits = try engine.makeBuffer([Float]([0, 2, 2, 0, -1, 1]))
        let flags = try engine.makeBuffer([Int32](repeating: -1, count: 3))
        keep += [logits, flags]
        try engine.run(.routerDecision(logits: logits.view(.float32, rows: 3, columns: 2), threshold: 0.5,
                                       decisions: flags.view(.int32, rows: 1, columns: 3)))
        let xs = try floats(x), ys = try floats(y)
        let taken = try floats(before), skipped = try floats(before), after = try floats(before)
        func flag(_ i: Int) -> TensorView { flags.view(.int32, rows: 1, columns: 3).columns(i ..< i + 1) }

        // Set flag: x + y, then a dependent op inside the region: (x + y) + y.
        try engine.encodePredicated(on: flag(0)) {
            try engine.run(.add(xs, ys, output: taken))
            try engine.run(.add(taken, ys, output: taken))
        }
        // Clear flag: nothing in the region may run.
        try engine.encodePredicated(on: flag(1)) {
            try engine.run(.add(xs, ys, output: skipped))
            try engine.run(.copy(source: xs, destination: skipped))
        }
        // After the regions, ops run again.
        try engine.run(.add(xs, ys, output: after))
        try engine.synchronize()

        var problems: [String] = []
        var decisions = [Int32](repeating: 0, count: 3)
        try decisions.withUnsafeMutableBytes { try engine.read(flags.handle, byteOffset: 0, into: $0) }
        if decisions != [1, 0, 1] { problems.append("router_decision wrote \(decisions), expected [1, 0, 1]") }
        let expectedTaken = zip(x, y).map { $0 + $1 + $1 }, expectedAfter = zip(x, y).map { $0 + $1 }
        if try !close(engine.readFloats(taken), expectedTaken) { problems.append("a region whose flag is set did not run (or ran out of order)") }
        if try engine.readFloats(skipped) != before { problems.append("a region whose flag is clear wrote its outputs") }
        if try !close(engine.readFloats(after), expectedAfter) { problems.append("an op after a predicated region did not run") }
        return problems
    }

    private static func close(_ a: [Float], _ b: [Float]) -> Bool {
        zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }
    }
}

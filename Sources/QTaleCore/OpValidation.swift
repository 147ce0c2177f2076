/// Shape and type rules of every ``Op``, checked once on the host so engines can assume valid operands.
public enum OpValidation {
    /// What ``ComputeEngine/encodePredicated(on:_:)`` takes: one int32 element.
    public static func checkPredicate(_ flag: TensorView) {
        precondition(flag.type == .int32 && flag.elementCount == 1, "a predicate is one int32")
    }

    public static func check(_ op: Op) throws {
        func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
            if !condition { throw QTaleError.invalidArgument("\(op.name): \(message())") }
        }
        func float(_ views: TensorView...) throws {
            for v in views { try require(v.type == .float32, "\(v) must be float32") }
        }
        func sameShape(_ a: TensorView, _ b: TensorView) throws {
            try require(a.rows == b.rows && a.columns == b.columns, "shape \(a.rows)×\(a.columns) ≠ \(b.rows)×\(b.columns)")
        }
        func positions(_ v: TensorView, count: Int) throws {
            try require(v.type == .int32 && v.rows == 1 && v.columns == count, "positions must be int32 [1 × \(count)]")
        }
        switch op {
        case let .embed(table, tokens, output):
            try positions(tokens, count: tokens.columns)
            try float(output)
            try require(output.rows == tokens.columns && output.columns == table.columns, "output must be [T × \(table.columns)]")
        case let .rmsNorm(input, weight, epsilon, output):
            try float(input, weight, output)
            try sameShape(input, output)
            try require(weight.rows == 1 && weight.columns == input.columns, "weight must be [1 × \(input.columns)]")
            try require(epsilon >= 0 && epsilon.isFinite, "epsilon must be finite and ≥ 0")
        case let .matmul(input, weight, output, _):
            try float(input, output)
            try require(input.columns == weight.columns, "input has \(input.columns) columns, weight expects \(weight.columns)")
            try require(output.rows == input.rows && output.columns == weight.rows, "output must be [\(input.rows) × \(weight.rows)]")
        case let .rope(data, pos, headDim, ropeDims, base):
            try float(data)
            try positions(pos, count: data.rows)
            try require(headDim > 0 && data.columns % headDim == 0, "columns must be a multiple of headDim")
            try require(ropeDims > 0 && ropeDims <= headDim && ropeDims % 2 == 0, "ropeDims must be even and ≤ headDim")
            try require(base > 0, "base must be positive")
        case let .attention(query, keys, values, queryPositions, keyPositions, heads, kvHeads, headDim, output):
            try float(query, keys, values, output)
            try require(heads > 0 && kvHeads > 0 && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
            try require(query.columns == heads * headDim, "query must have heads*headDim columns")
            try require(keys.columns == kvHeads * headDim, "keys must have kvHeads*headDim columns")
            try sameShape(keys, values)
            try sameShape(query, output)
            try positions(queryPositions, count: query.rows)
            if let keyPositions { try positions(keyPositions, count: keys.rows) }
        case let .swiGLU(gate, up, output):
            try float(gate, up, output)
            try sameShape(gate, up)
            try sameShape(gate, output)
        case let .add(a, b, output):
            try float(a, b, output)
            try sameShape(a, b)
            try sameShape(a, output)
        case let .copy(source, destination):
            try require(source.type == destination.type, "types differ")
            try sameShape(source, destination)
        case let .linear(input, weight, bias, output):
            try float(input, weight, output)
            try require(input.columns == weight.columns, "input has \(input.columns) columns, weight expects \(weight.columns)")
            try require(output.rows == input.rows && output.columns == weight.rows, "output must be [\(input.rows) × \(weight.rows)]")
            if let bias { try float(bias); try require(bias.rows == 1 && bias.columns == weight.rows, "bias must be [1 × \(weight.rows)]") }
        case let .silu(input, output):
            try float(input, output)
            try sameShape(input, output)
        case let .gatherRows(source, indices, output):
            try require(indices.type == .int32 && indices.rows == 1, "indices must be int32 [1 × M]")
            try require(source.type == output.type, "types differ")
            try require(output.rows == indices.columns && output.columns == source.columns, "output must be [\(indices.columns) × \(source.columns)]")
        case let .scatterRows(source, indices, output):
            try require(indices.type == .int32 && indices.rows == 1, "indices must be int32 [1 × M]")
            try require(source.type == output.type, "types differ")
            try require(source.rows == indices.columns && output.columns == source.columns, "source must be [\(indices.columns) × \(output.columns)]")
        case let .routerDecision(logits, threshold, decisions):
            try float(logits)
            try require(logits.columns == 2, "logits must be [T × 2] (skip, execute)")
            try positions(decisions, count: logits.rows)
            try require(!threshold.isNaN, "threshold must be a number")
        }
    }
}

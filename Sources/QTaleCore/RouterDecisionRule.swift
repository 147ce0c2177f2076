import Foundation

/// The layer-skip decision rule of method.md §2: a token executes a block iff `p_exec > θ`, where
/// `p_exec = softmax(skip, execute)[1] = sigmoid(execute − skip)`.
///
/// Because sigmoid is monotonic, `p_exec > θ ⇔ execute − skip > log(θ / (1 − θ))`. Deciding on the logit
/// difference needs no exponential, so the host and every engine's `router_decision` kernel reach the
/// same decision from the same logits.
public enum RouterDecisionRule {
    /// `log(θ / (1 − θ))`: −∞ for θ ≤ 0 (always execute), +∞ for θ ≥ 1 (never).
    public static func margin(threshold: Float) -> Float {
        if threshold <= 0 { return -.infinity }
        if threshold >= 1 { return .infinity }
        let t = Double(threshold)
        return Float(log(t / (1 - t)))
    }

    /// Whether a token with router logits (`skip`, `execute`) executes, given `margin(threshold:)`.
    @inlinable public static func executes(skip: Float, execute: Float, margin: Float) -> Bool {
        execute - skip > margin
    }
}

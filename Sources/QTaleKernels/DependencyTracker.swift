import QTaleCore

/// Decides where an in-order stream of ops needs a barrier: before an op that ``Op/dependsOn(_:)`` an op
/// recorded since the previous barrier. Independent neighbours (the q, k and v projections, gate and
/// up, the two RoPEs, the two cache writes) then share one phase.
///
/// The same rule as the CPU engine's `markWaits`, for engines that record ops into a command stream.
public struct DependencyTracker {
    /// Ops recorded since the last barrier.
    private var phase: [Op] = []

    public init() { phase.reserveCapacity(64) }

    /// Records `op` and returns whether a barrier must come before it (then a new phase starts with it).
    public mutating func needsBarrier(before op: Op) -> Bool {
        var wait = false
        for earlier in phase where op.dependsOn(earlier) {
            wait = true
            break
        }
        if wait { phase.removeAll(keepingCapacity: true) }
        phase.append(op)
        return wait
    }

    /// Forgets recorded ops (after the stream has been waited on).
    public mutating func reset() { phase.removeAll(keepingCapacity: true) }
}

import QTaleCore

/// Decides where an in-order stream of ops needs a barrier: before an op that ``TensorAccessing/dependsOn(_:)`` an op
/// recorded since the previous barrier. Independent neighbours (the q, k and v projections, gate and
/// up, the two RoPEs, the two cache writes) then share one phase.
///
/// The CPU engine's `markWaits` and the engines that record ops into a command stream use it; `Work` is
/// ``Op``, or any recorded work with known memory effects (the CPU engine's mix of ``Op`` and ``TrainingOp``).
public struct WorkDependencyTracker<Work: TensorAccessing> {
    /// Work recorded since the last barrier.
    @usableFromInline var phase: [Work] = []

    public init() { phase.reserveCapacity(64) }

    /// Records `op` and returns whether a barrier must come before it (then a new phase starts with it).
    /// Inlinable, so it is specialised for the caller's `Work` (it runs once per recorded op).
    @inlinable public mutating func needsBarrier(before op: Work) -> Bool {
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
    @inlinable public mutating func reset() { phase.removeAll(keepingCapacity: true) }
}

/// The tracker for streams of ``Op``s.
public typealias DependencyTracker = WorkDependencyTracker<Op>

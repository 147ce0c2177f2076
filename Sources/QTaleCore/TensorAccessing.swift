/// Work whose memory effects are known: which views it reads and writes. Engines that record work use
/// it to place barriers only between dependent items (``Op`` and ``TrainingOp`` conform).
public protocol TensorAccessing {
    func forEachRead(_ body: (TensorView) -> Void)
    func forEachWrite(_ body: (TensorView) -> Void)
}

extension Op: TensorAccessing {}

extension TensorAccessing {
    /// Whether this item must wait for `earlier` to finish: it reads what `earlier` writes, or writes what
    /// `earlier` reads or writes (any mix of recorded work). Engines use it to run independent items, e.g.
    /// the q, k and v projections, without a barrier between them.
    @inlinable public func dependsOn<Earlier: TensorAccessing>(_ earlier: Earlier) -> Bool {
        var conflict = false
        earlier.forEachWrite { written in
            forEachRead { if $0.overlaps(written) { conflict = true } }
            forEachWrite { if $0.overlaps(written) { conflict = true } }
        }
        if conflict { return true }
        earlier.forEachRead { read in forEachWrite { if $0.overlaps(read) { conflict = true } } }
        return conflict
    }
}

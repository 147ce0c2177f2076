import QTaleCore
import Synchronization

/// Shares the slices of a recorded op list among workers, in order, with a wait before each op that
/// depends on earlier ones.
///
/// Slices are numbered by one ticket counter across the whole list; a worker claims a ticket, runs
/// it when its op comes up, and before an op marked in `waits` spins until every earlier slice is
/// done. No worker ever waits for a ticket that nobody has claimed, so the scheme cannot deadlock,
/// even when `concurrentPerform` runs some iterations one after another on one thread.
final class SliceScheduler {
    private let claimed = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)

    func reset() {
        claimed.store(0, ordering: .relaxed)
        finished.store(0, ordering: .relaxed)
    }

    @inline(__always)
    func run(ops: UnsafeBufferPointer<Op>, waits: UnsafeBufferPointer<Bool>, worker: Int,
             sliceCount: (Op) -> Int, execute: (Op, WorkSlice) -> Void) {
        var ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
        var base = 0
        // Slices before the current phase: all must be done before any slice of the phase runs.
        var phaseBase = 0
        for (i, op) in ops.enumerated() {
            let count = sliceCount(op)
            if waits[i] { phaseBase = base }
            if ticket < base + count {
                while finished.load(ordering: .acquiring) < phaseBase {}
            }
            while ticket < base + count {
                execute(op, WorkSlice(index: ticket - base, count: count, worker: worker))
                finished.wrappingAdd(1, ordering: .releasing)
                ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
            }
            base += count
        }
        // The caller reads results after this returns: every slice must be done.
        while finished.load(ordering: .acquiring) < base {}
    }
}

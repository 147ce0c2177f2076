import QTaleCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    func run<Work>(ops: UnsafeBufferPointer<Work>, waits: UnsafeBufferPointer<Bool>, worker: Int,
                   sliceCount: (Work) -> Int, execute: (Work, WorkSlice) -> Void) {
        var ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
        var base = 0
        // Slices before the current phase: all must be done before any slice of the phase runs.
        var phaseBase = 0
        for (i, op) in ops.enumerated() {
            let count = sliceCount(op)
            if waits[i] { phaseBase = base }
            if ticket < base + count { waitUntilFinished(phaseBase) }
            while ticket < base + count {
                execute(op, WorkSlice(index: ticket - base, count: count, worker: worker))
                finished.wrappingAdd(1, ordering: .releasing)
                ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
            }
            base += count
        }
        // The caller reads results after this returns: every slice must be done.
        waitUntilFinished(base)
    }

    /// Spins until `target` slices are done. Spinning keeps the wait short when every worker has a core;
    /// after a while it yields, so a loaded machine does not starve the worker being waited for.
    @inline(__always)
    private func waitUntilFinished(_ target: Int) {
        var spins = 0
        while finished.load(ordering: .acquiring) < target {
            spins += 1
            if spins > 4096 { sched_yield() }
        }
    }
}

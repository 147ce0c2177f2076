import QTaleCore
import Synchronization

/// Shares the slices of a recorded op list among workers, in order, with a wait after each op.
///
/// Slices are numbered by one ticket counter across the whole list; a worker claims a ticket, runs
/// it when its op comes up, and waits until every slice of the current op is done before starting
/// the next op. No worker ever waits for a ticket that nobody has claimed, so the scheme cannot
/// deadlock even when `concurrentPerform` runs some iterations one after another on one thread.
final class SliceScheduler {
    private let claimed = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)

    func reset() {
        claimed.store(0, ordering: .relaxed)
        finished.store(0, ordering: .relaxed)
    }

    @inline(__always)
    func run(ops: UnsafeBufferPointer<Op>, worker: Int, sliceCount: (Op) -> Int, execute: (Op, WorkSlice) -> Void) {
        var ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
        var base = 0
        for op in ops {
            let count = sliceCount(op)
            while ticket < base + count {
                execute(op, WorkSlice(index: ticket - base, count: count, worker: worker))
                finished.wrappingAdd(1, ordering: .releasing)
                ticket = claimed.wrappingAdd(1, ordering: .relaxed).oldValue
            }
            base += count
            while finished.load(ordering: .acquiring) < base {}
        }
    }
}

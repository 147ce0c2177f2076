import Dispatch
import Foundation

/// How the quantizers spread independent work (rows of a weight matrix, column panels of a factor)
/// over the cores: a few more chunks than cores, so a core shared with another process does not
/// hold the rest up, and no parallel region at all when the work is too small to pay for waking threads.
enum ParallelWork {
    static let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body` with disjoint consecutive ranges covering `0 ..< count`, in parallel when
    /// `estimatedWork` (multiply-adds, roughly) exceeds about 64k.
    static func forEachRange(_ count: Int, estimatedWork: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = estimatedWork >= 1 << 16 ? min(count, 4 * cores) : 1
        if chunks == 1 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            body((count * chunk / chunks) ..< (count * (chunk + 1) / chunks))
        }
    }
}

import Foundation

/// A progress bar for long jobs (quantization, training, evaluation), written to standard error so
/// standard output keeps only the product.
///
/// On a terminal it redraws one line at most ten times a second:
/// `quantize [########------------]  12/30 blocks  0:41 elapsed  ETA 1:02  loss 0.013`.
/// When standard error is a file or a pipe (CI logs) it prints a plain line at every tenth of the way,
/// so logs stay short but still show that the job moves.
public final class ProgressBar {
    public let title: String
    public let total: Int
    public let unit: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var lastDecile = -1
    private let interactive: Bool
    private let enabled: Bool

    /// - Parameters:
    ///   - total: the count that means done (at least 1).
    ///   - unit: what is counted, e.g. `"blocks"`.
    ///   - enabled: false silences the bar (e.g. for `--quiet` or tests).
    public init(_ title: String, total: Int, unit: String = "", enabled: Bool = true) {
        self.title = title
        self.total = max(1, total)
        self.unit = unit
        self.enabled = enabled
        interactive = isatty(2) != 0
    }

    /// Shows `done` of `total`, with an optional status such as the current loss.
    public func update(_ done: Int, status: String = "") {
        guard enabled else { return }
        let now = Date()
        let finished = done >= total
        if interactive {
            guard finished || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
            lastDraw = now
            write("\r\u{1B}[K" + line(done, status: status, now: now) + (finished ? "\n" : ""))
        } else {
            let decile = min(10, done * 10 / total)
            guard decile != lastDecile else { return }
            lastDecile = decile
            write(line(done, status: status, now: now) + "\n")
        }
    }

    /// Seconds since the bar was created.
    public var elapsed: Double { Date().timeIntervalSince(start) }

    private func line(_ done: Int, status: String, now: Date) -> String {
        let fraction = min(1, Double(max(0, done)) / Double(total))
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let elapsed = now.timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : .nan
        var text = "\(title) [\(bar)] \(done)/\(total)\(unit.isEmpty ? "" : " " + unit)  \(Self.clock(elapsed)) elapsed"
        if done < total { text += "  ETA \(Self.clock(eta))" }
        if !status.isEmpty { text += "  " + status }
        return text
    }

    /// `m:ss` or `h:mm:ss`; `--:--` when unknown.
    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

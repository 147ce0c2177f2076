/// Errors that reach the user. Each message names the problem and, where it helps, what to do.
public enum QTaleError: Error, CustomStringConvertible, Equatable {
    /// A model or weights file is malformed, truncated or unsupported.
    case invalidModel(String)
    /// An argument, flag or shape is out of range.
    case invalidArgument(String)
    /// An engine could not be created or failed while running.
    case engine(String)
    /// A file could not be read or written.
    case io(String)

    public var description: String {
        switch self {
        case .invalidModel(let message): "invalid model: \(message)"
        case .invalidArgument(let message): message
        case .engine(let message): "engine error: \(message)"
        case .io(let message): message
        }
    }
}

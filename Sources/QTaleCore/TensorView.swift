/// An opaque reference to memory owned by a ``ComputeEngine``.
///
/// Handles are plain values so that building an ``Op`` in the token loop causes no reference counting.
/// Lifetime is managed by the ``DeviceBuffer`` that produced the handle.
public struct BufferHandle: Hashable, Sendable {
    public let id: Int
    public init(id: Int) { self.id = id }
}

/// A buffer allocated by an engine. Freed when the last reference goes away.
///
/// Keep `DeviceBuffer`s alive in long-lived objects (weights, caches, scratch arenas) and pass their
/// ``handle`` (or ``TensorView``s over it) to ops.
public final class DeviceBuffer {
    public let handle: BufferHandle
    public let byteCount: Int
    public let engine: any ComputeEngine

    public init(handle: BufferHandle, byteCount: Int, engine: any ComputeEngine) {
        self.handle = handle
        self.byteCount = byteCount
        self.engine = engine
    }

    deinit { engine.release(handle) }

    /// A row-major matrix view of `rows × columns` elements starting at `byteOffset`.
    public func view(_ type: ScalarType, rows: Int, columns: Int, byteOffset: Int = 0) -> TensorView {
        let view = TensorView(buffer: handle, type: type, rows: rows, columns: columns,
                              rowStride: columns, byteOffset: byteOffset)
        precondition(view.byteOffset + view.byteSpan <= byteCount, "view exceeds buffer")
        return view
    }
}

/// A strided 2-D view into an engine buffer: `rows × columns` elements of `type`, row `r` starting
/// `r * rowStride` elements after `byteOffset`. Vectors are `rows = 1`.
///
/// Views are values: slicing rows (e.g. a KV-cache position range) makes a new view, never a copy.
public struct TensorView: Hashable, Sendable, CustomStringConvertible {
    public var buffer: BufferHandle
    public var type: ScalarType
    public var rows: Int
    public var columns: Int
    /// Elements between the starts of consecutive rows (≥ `columns`).
    public var rowStride: Int
    public var byteOffset: Int

    public init(buffer: BufferHandle, type: ScalarType, rows: Int, columns: Int, rowStride: Int, byteOffset: Int) {
        self.buffer = buffer
        self.type = type
        self.rows = rows
        self.columns = columns
        self.rowStride = rowStride
        self.byteOffset = byteOffset
    }

    public var elementCount: Int { rows * columns }

    /// Bytes from the first to one past the last element.
    public var byteSpan: Int { rows == 0 ? 0 : ((rows - 1) * rowStride + columns) * type.byteSize }

    public var isContiguous: Bool { rowStride == columns || rows <= 1 }

    /// Rows `range` of this view.
    public func rows(_ range: Range<Int>) -> TensorView {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "row range out of bounds")
        var view = self
        view.byteOffset += range.lowerBound * rowStride * type.byteSize
        view.rows = range.count
        return view
    }

    /// Columns `range` of every row (e.g. one attention head).
    public func columns(_ range: Range<Int>) -> TensorView {
        precondition(range.lowerBound >= 0 && range.upperBound <= columns, "column range out of bounds")
        var view = self
        view.byteOffset += range.lowerBound * type.byteSize
        view.columns = range.count
        return view
    }

    public var description: String { "\(type)[\(rows)×\(columns)] (buffer \(buffer.id)+\(byteOffset))" }
}

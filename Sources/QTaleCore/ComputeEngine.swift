/// A compute engine: owns buffers and runs ``Op``s on them. The model, quantizers, training and
/// evaluation depend on this protocol only.
///
/// **Synchronisation.** Each engine has one in-order queue. ``encode(_:)`` records an op (an engine
/// may also run it at once, as the CPU engine does); ``read(_:into:)`` and ``synchronize()`` wait for
/// all recorded work. ``write(_:to:)`` is ordered after recorded work that reads or writes the same
/// memory. Writes and reads are the only host↔device crossings.
///
/// **Threads.** An engine instance belongs to one inference session; it is not thread-safe.
///
/// To add an engine, implement this protocol in a new target and pass the conformance suite
/// (`QTaleConformance`); nothing else in the code base changes. See `docs/porting.md`.
public protocol ComputeEngine: AnyObject {
    /// Short name used by `--backend`, e.g. `"cpu"`.
    var name: String { get }
    /// The device in words, e.g. `"AMD EPYC, 2 threads"`.
    var deviceDescription: String { get }

    /// Allocates `byteCount` bytes (zero-filled). The memory is freed when the returned buffer dies.
    func allocate(byteCount: Int) throws -> DeviceBuffer
    /// Called by ``DeviceBuffer`` on deinit; not for direct use.
    func release(_ handle: BufferHandle)

    /// Copies host bytes into `buffer` at `byteOffset`.
    func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws
    /// Waits for recorded work, then copies bytes from `buffer` at `byteOffset` to the host.
    func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws

    /// Records `op`. Operands must be valid (``OpValidation`` checks them); engines may assume so.
    func encode(_ op: Op) throws
    /// Blocks until all recorded work has finished.
    func synchronize() throws

    /// Records the ops `body` encodes so that they run only if the int32 at `flag` (a one-element view)
    /// is nonzero when the engine reaches them. This is how a decision made on the device
    /// (``Op/routerDecision``) skips a block without the host waiting for it.
    ///
    /// `body` may only encode ops (no reads, writes or synchronisation), and regions do not nest.
    /// The default, ``encodePredicatedOnHost(on:_:)``, reads the flag and runs `body` if it is set:
    /// correct everywhere, and as fast as it gets where reads cost nothing (the CPU). GPU engines
    /// predicate on the device instead: OpenCL kernels take the flag as an argument, Vulkan records
    /// the region under conditional rendering.
    func encodePredicated(on flag: TensorView, _ body: () throws -> Void) throws

    /// Whether routed decode should let the engine decide (`RouterDecisionSite.device`: a decision op and
    /// predicated regions) rather than read router logits back per block. The default is true: with the
    /// host-read predication both cost one round trip per block, and on the CPU engine deciding on the
    /// engine measured equal or a few percent faster. GPU engines say true on GPUs, where a round trip
    /// drains the queue, and false on CPU devices (PoCL, llvmpipe), where the round trip is cheap and
    /// launching the skipped kernels is not. Measure with
    /// `qtale bench generate --routers F --router-decisions host device` (bench/router_decisions.sh).
    var prefersDevicePredication: Bool { get }
}

extension ComputeEngine {
    /// Allocates a buffer and fills it with `values`.
    public func makeBuffer<T: BitwiseCopyable>(_ values: [T]) throws -> DeviceBuffer {
        let buffer = try allocate(byteCount: max(1, values.count * MemoryLayout<T>.stride))
        try values.withUnsafeBytes { try write($0, to: buffer.handle, byteOffset: 0) }
        return buffer
    }

    /// Writes `values` into the memory of `view`, which must be contiguous.
    public func write<T: BitwiseCopyable>(_ values: [T], to view: TensorView) throws {
        precondition(view.isContiguous && values.count == view.elementCount, "write: shape mismatch")
        try values.withUnsafeBytes { try write($0, to: view.buffer, byteOffset: view.byteOffset) }
    }

    /// Reads the contiguous `view` as float32 values.
    public func readFloats(_ view: TensorView) throws -> [Float] {
        precondition(view.isContiguous && view.type == .float32, "readFloats: need a contiguous float32 view")
        var out = [Float](repeating: 0, count: view.elementCount)
        try out.withUnsafeMutableBytes { try read(view.buffer, byteOffset: view.byteOffset, into: $0) }
        return out
    }

    /// Uploads a host-side quantized matrix; the returned value references buffers kept in `keepAlive`.
    public func upload(_ matrix: PackedMatrix, keepAlive: inout [DeviceBuffer]) throws -> QuantizedMatrix {
        let codes = try makeBuffer(matrix.codes)
        let scales = try makeBuffer(matrix.scales)
        let offsets = try makeBuffer(matrix.offsets)
        keepAlive += [codes, scales, offsets]
        return QuantizedMatrix(format: matrix.format, rows: matrix.rows, columns: matrix.columns,
                               codes: codes.handle, scales: scales.handle, offsets: offsets.handle)
    }

    public func encodePredicated(on flag: TensorView, _ body: () throws -> Void) throws {
        try encodePredicatedOnHost(on: flag, body)
    }

    public var prefersDevicePredication: Bool { true }

    /// Predication decided by the host: waits for recorded work, reads the flag, runs `body` if it is nonzero.
    public func encodePredicatedOnHost(on flag: TensorView, _ body: () throws -> Void) throws {
        OpValidation.checkPredicate(flag)
        var value: Int32 = 0
        try withUnsafeMutableBytes(of: &value) { try read(flag.buffer, byteOffset: flag.byteOffset, into: $0) }
        if value != 0 { try body() }
    }

    /// Validates `op`, then encodes it.
    public func run(_ op: Op) throws {
        try OpValidation.check(op)
        try encode(op)
    }
}

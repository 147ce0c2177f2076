import QTaleCore
import QTaleModel
import QTaleTestSupport
import XCTest

/// Weights are uploaded once; per decode step only the token id and its position go to the engine and
/// only the logits come back. Checked by counting the protocol's only two crossings on a wrapped engine.
final class TransferTests: XCTestCase {
    final class CountingEngine: ComputeEngine {
        let inner: any ComputeEngine
        var writes = 0, writtenBytes = 0, reads = 0, readBytes = 0
        init(_ inner: any ComputeEngine) { self.inner = inner }
        var name: String { inner.name }
        var deviceDescription: String { inner.deviceDescription }
        func allocate(byteCount: Int) throws -> DeviceBuffer {
            let b = try inner.allocate(byteCount: byteCount)
            // Keep the inner buffer alive for as long as the wrapper's.
            buffers.append(b)
            return DeviceBuffer(handle: b.handle, byteCount: byteCount, engine: self)
        }
        var buffers: [DeviceBuffer] = []
        func release(_ handle: BufferHandle) {}
        func write(_ bytes: UnsafeRawBufferPointer, to buffer: BufferHandle, byteOffset: Int) throws {
            writes += 1
            writtenBytes += bytes.count
            try inner.write(bytes, to: buffer, byteOffset: byteOffset)
        }
        func read(_ buffer: BufferHandle, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
            reads += 1
            readBytes += bytes.count
            try inner.read(buffer, byteOffset: byteOffset, into: bytes)
        }
        func encode(_ op: Op) throws { try inner.encode(op) }
        func synchronize() throws { try inner.synchronize() }
    }

    func testDecodeMovesOnlyTokenPositionAndLogits() throws {
        let engine = CountingEngine(try EngineRegistry.make("cpu", threads: 2))
        let model = try LoadedModel(path: SyntheticModelTests.path, engine: engine)
        let weightWrites = engine.writes
        XCTAssertGreaterThan(weightWrites, 10, "weights are uploaded at load")
        let session = try model.makeSession()
        _ = try session.forward([1, 50, 60, 70])
        var logits = [Float](repeating: 0, count: model.configuration.vocabSize)
        let (writes, written, reads, read) = (engine.writes, engine.writtenBytes, engine.reads, engine.readBytes)
        for token: Int32 in [5, 6, 7] {
            try logits.withUnsafeMutableBufferPointer { try session.forward(token: token, into: $0) }
        }
        XCTAssertEqual(engine.writes - writes, 3 * 2, "token id and position per step")
        XCTAssertEqual(engine.writtenBytes - written, 3 * 8)
        XCTAssertEqual(engine.reads - reads, 3, "one logits read per step")
        XCTAssertEqual(engine.readBytes - read, 3 * 4 * model.configuration.vocabSize)
    }
}

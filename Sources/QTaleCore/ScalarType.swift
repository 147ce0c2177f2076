/// The element types that engine buffers hold.
///
/// Activations, norms and caches are `float32`; token ids and positions are `int32`.
/// Quantized weights are not a scalar type: see ``QuantizedMatrix``.
public enum ScalarType: String, Sendable, Hashable, CustomStringConvertible {
    case float32
    case int32

    /// Bytes per element.
    @inlinable public var byteSize: Int { 4 }

    public var description: String { rawValue }
}

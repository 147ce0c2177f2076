import COpenCL
import QTaleCore

/// The OpenCL entry points, resolved once per process from the ICD loader (`libOpenCL.so.1`) by
/// `COpenCL`'s loader, plus checked wrappers for the info queries.
///
/// Every call goes through ``api``; a failing status becomes ``QTaleError/engine(_:)`` naming the
/// function and the CL error (``OpenCLLibrary/check(_:_:)``).
final class OpenCLLibrary {
    let api: QTaleOpenCLFunctions

    private init(api: QTaleOpenCLFunctions) { self.api = api }

    /// The loaded library, or why it could not be loaded (a message that names what to install).
    static let shared: Result<OpenCLLibrary, QTaleError> = {
        var table = QTaleOpenCLFunctions()
        if let message = qtale_opencl_load(&table) { return .failure(.engine(String(cString: message))) }
        return .success(OpenCLLibrary(api: table))
    }()

    static func load() throws -> OpenCLLibrary { try shared.get() }

    /// Throws unless `status` is `CL_SUCCESS`.
    @inline(__always)
    static func check(_ status: cl_int, _ function: @autoclosure () -> String) throws {
        if status != CL_SUCCESS { throw failure(status, function()) }
    }

    static func failure(_ status: cl_int, _ function: String) -> QTaleError {
        .engine("\(function) failed: \(OpenCLError.name(status))")
    }

    // MARK: Discovery

    /// Every platform, in the ICD loader's order; empty when none is installed.
    func platforms() throws -> [cl_platform_id?] {
        var count: cl_uint = 0
        let status = api.GetPlatformIDs!(0, nil, &count)
        // The ICD loader reports "no platform" as CL_PLATFORM_NOT_FOUND_KHR (-1001).
        if status == -1001 || count == 0 { return [] }
        try Self.check(status, "clGetPlatformIDs")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try Self.check(api.GetPlatformIDs!(count, &ids, nil), "clGetPlatformIDs")
        return ids
    }

    /// Every device of `platform`; empty when it has none.
    func devices(of platform: cl_platform_id?) throws -> [cl_device_id?] {
        var count: cl_uint = 0
        let status = api.GetDeviceIDs!(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND || count == 0 { return [] }
        try Self.check(status, "clGetDeviceIDs")
        var ids = [cl_device_id?](repeating: nil, count: Int(count))
        try Self.check(api.GetDeviceIDs!(platform, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil), "clGetDeviceIDs")
        return ids
    }

    func platformString(_ platform: cl_platform_id?, _ parameter: cl_platform_info) throws -> String {
        try Self.readString("clGetPlatformInfo") { api.GetPlatformInfo!(platform, parameter, $0, $1, $2) }
    }

    func deviceString(_ device: cl_device_id?, _ parameter: cl_device_info) throws -> String {
        try Self.readString("clGetDeviceInfo") { api.GetDeviceInfo!(device, parameter, $0, $1, $2) }
    }

    /// A fixed-size device property (`cl_uint`, `cl_ulong`, `size_t`, ...).
    func value<T: BitwiseCopyable>(_ device: cl_device_id?, _ parameter: cl_device_info, as type: T.Type) throws -> T {
        try withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer in
            try Self.check(api.GetDeviceInfo!(device, parameter, MemoryLayout<T>.size, buffer.baseAddress, nil), "clGetDeviceInfo")
            return buffer[0]
        }
    }

    /// Runs a size query then a data query and returns the text without its terminating NUL or padding.
    static func readString(_ function: String,
                           _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> cl_int) throws -> String {
        var size = 0
        try check(query(0, nil, &size), function)
        guard size > 0 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBytes { try check(query(size, $0.baseAddress, nil), function) }
        let text = bytes.prefix { $0 != 0 }
        return String(decoding: text, as: UTF8.self).trimmingWhitespace
    }
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}

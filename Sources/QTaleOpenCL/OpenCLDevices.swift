import COpenCL
import QTaleCore

/// One OpenCL device on this machine, in `--device` order (platforms in ICD order, then their devices).
struct OpenCLDevice {
    let platform: cl_platform_id?
    let id: cl_device_id?
    let platformName: String
    let name: String
    /// `CL_DEVICE_VERSION`, e.g. "OpenCL 3.0 PoCL HSTR: ...".
    let version: String
    let driverVersion: String
    /// `CL_DEVICE_TYPE_CPU`: work-groups run as loops on CPU cores (PoCL), which changes the best kernel shape.
    let isCPU: Bool
    /// `CL_DEVICE_MAX_COMPUTE_UNITS`: PoCL's worker threads on a CPU.
    let computeUnits: Int

    /// "platform: device name (OpenCL version, driver version)".
    var description: String { "\(platformName): \(name) (\(isCPU ? "CPU, " : "")\(version), driver \(driverVersion))" }

    /// Every device of every platform; platforms whose devices cannot be listed are skipped.
    static func all(_ library: OpenCLLibrary) throws -> [OpenCLDevice] {
        var found: [OpenCLDevice] = []
        for platform in try library.platforms() {
            guard let ids = try? library.devices(of: platform) else { continue }
            let platformName = (try? library.platformString(platform, cl_platform_info(CL_PLATFORM_NAME))) ?? "OpenCL platform"
            for id in ids {
                found.append(OpenCLDevice(
                    platform: platform, id: id, platformName: platformName,
                    name: try library.deviceString(id, cl_device_info(CL_DEVICE_NAME)),
                    version: try library.deviceString(id, cl_device_info(CL_DEVICE_VERSION)),
                    driverVersion: try library.deviceString(id, cl_device_info(CL_DRIVER_VERSION)),
                    isCPU: (try library.value(id, cl_device_info(CL_DEVICE_TYPE), as: cl_device_type.self)
                            & cl_device_type(CL_DEVICE_TYPE_CPU)) != 0,
                    computeUnits: Int(try library.value(id, cl_device_info(CL_DEVICE_MAX_COMPUTE_UNITS), as: cl_uint.self))))
            }
        }
        return found
    }

    /// What `qtale backends` and the tests show: the devices, or why OpenCL cannot run here.
    static func probe() -> EngineProbe {
        let library: OpenCLLibrary
        switch OpenCLLibrary.shared {
        case .success(let loaded): library = loaded
        case .failure(let error): return .unavailable(error.message)
        }
        do {
            let platforms = try library.platforms()
            guard !platforms.isEmpty else {
                return .unavailable("no OpenCL platform found: install an OpenCL driver (pocl-opencl-icd for the CPU)")
            }
            let devices = try all(library)
            guard !devices.isEmpty else {
                return .unavailable("no OpenCL device found on \(platforms.count) platform\(platforms.count == 1 ? "" : "s"): "
                                    + "install an OpenCL driver (pocl-opencl-icd for the CPU)")
            }
            let versions = platforms.compactMap { platform -> String? in
                guard let name = try? library.platformString(platform, cl_platform_info(CL_PLATFORM_NAME)),
                      let version = try? library.platformString(platform, cl_platform_info(CL_PLATFORM_VERSION)) else { return nil }
                return "\(name) (\(version))"
            }
            return EngineProbe(devices: devices.map(\.description), version: versions.joined(separator: "; "))
        } catch {
            return .unavailable("OpenCL found no usable device: \(error)")
        }
    }
}

extension QTaleError {
    /// The message without the "engine error:" prefix.
    var message: String {
        switch self {
        case .invalidModel(let m), .invalidArgument(let m), .engine(let m), .io(let m): m
        }
    }
}

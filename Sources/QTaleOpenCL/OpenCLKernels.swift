import COpenCL
import Foundation
import QTaleCore
import QTaleKernels

/// The kernels of `Kernels/opencl`, built for one device: one `cl_program` per source file and one
/// `cl_kernel` per ``KernelName``.
///
/// Sources come from the generated ``OpenCLKernelSources`` (the default) or, when `QTALE_KERNELS_DIR`
/// names a `Kernels` folder, from its `opencl/*.cl` files read at start-up (headers inlined as
/// `scripts/kernelgen.py` does), for editing kernels without rebuilding. The launch constants of
/// ``KernelPlanner`` reach the kernels as `-D` build options, so they are defined once.
/// Compiled binaries are cached by the driver (PoCL: `~/.cache/pocl/kcache`).
final class OpenCLKernels {
    private let library: OpenCLLibrary
    private var programs: [cl_program] = []
    /// Indexed by ``KernelName/index``; nil where Kernels/opencl defines no such kernel.
    private var kernels: [cl_kernel?] = []

    /// `-D` options for `device`; `QTALE_OPENCL_OPTIONS` appends more (for experiments).
    /// `QTALE_OPENCL_GPU_KERNELS=1` builds the GPU variants on any device, so CI checks them on PoCL.
    static func buildOptions(for device: OpenCLDevice) -> String {
        var options = "-DQTALE_WG=\(KernelPlanner.workgroupSize) -DQTALE_MATVEC_ROWS=\(KernelPlanner.matvecRowsPerGroup) "
            + "-DQTALE_TILE_ROWS=\(KernelPlanner.matmulTileRows) -DQTALE_TILE_TOKENS=\(KernelPlanner.matmulTileTokens)"
        options += " -DQTALE_CPU_DEVICE=\(cpuVariants(for: device) ? 1 : 0)"
        if let extra = ProcessInfo.processInfo.environment["QTALE_OPENCL_OPTIONS"], !extra.isEmpty { options += " " + extra }
        return options
    }

    /// Whether `device` gets the CPU variants of the kernels (`QTALE_CPU_DEVICE`): a CPU runs a work-group
    /// as a loop on one core, so kernels give one work-item more work.
    static func cpuVariants(for device: OpenCLDevice) -> Bool {
        device.isCPU && ProcessInfo.processInfo.environment["QTALE_OPENCL_GPU_KERNELS"] != "1"
    }

    /// Whether these kernels are the CPU variants (``cpuVariants(for:)``).
    let cpuVariants: Bool

    init(library: OpenCLLibrary, context: cl_context, device: OpenCLDevice) throws {
        self.library = library
        cpuVariants = Self.cpuVariants(for: device)
        let api = library.api
        var byName: [String: cl_kernel] = [:]
        do {
            for file in try Self.sources() {
                let program = try Self.build(file, library: library, context: context, device: device)
                programs.append(program)
                let names = try OpenCLLibrary.readString("clGetProgramInfo(CL_PROGRAM_KERNEL_NAMES)") {
                    api.GetProgramInfo!(program, cl_program_info(CL_PROGRAM_KERNEL_NAMES), $0, $1, $2)
                }
                for name in names.split(separator: ";").map({ String($0).trimmingWhitespace }) where !name.isEmpty {
                    var status: cl_int = 0
                    let kernel = api.CreateKernel!(program, name, &status)
                    try OpenCLLibrary.check(status, "clCreateKernel(\(name))")
                    guard let kernel else { throw OpenCLLibrary.failure(status, "clCreateKernel(\(name))") }
                    if let duplicate = byName.updateValue(kernel, forKey: name) {
                        _ = api.ReleaseKernel!(duplicate)
                        throw QTaleError.engine("OpenCL kernel \(name) is defined in more than one file of Kernels/opencl")
                    }
                }
            }
            for name in KernelName.allCases {
                // A kernel the sources lack fails the launches that need it (see `kernel(_:)`), not the engine.
                let kernel = byName.removeValue(forKey: name.rawValue)
                kernels.append(kernel)
                guard let kernel else { continue }
                var maximum = 0
                try OpenCLLibrary.check(api.GetKernelWorkGroupInfo!(kernel, device.id, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
                                                                     MemoryLayout<Int>.size, &maximum, nil),
                                        "clGetKernelWorkGroupInfo(\(name.rawValue))")
                guard maximum >= KernelPlanner.workgroupSize else {
                    throw QTaleError.engine("OpenCL kernel \(name.rawValue) runs at most \(maximum) work-items per group on "
                                            + "\(device.name); qtale needs \(KernelPlanner.workgroupSize)")
                }
            }
        } catch {
            for kernel in byName.values { _ = api.ReleaseKernel!(kernel) }
            release()
            throw error
        }
        for kernel in byName.values { _ = api.ReleaseKernel!(kernel) }  // helpers nobody launches
    }

    deinit { release() }

    private func release() {
        for kernel in kernels { if let kernel { _ = library.api.ReleaseKernel!(kernel) } }
        for program in programs { _ = library.api.ReleaseProgram!(program) }
        kernels = []
        programs = []
    }

    /// The kernel for `name`; throws when Kernels/opencl does not define it.
    @inline(__always) func kernel(_ name: KernelName) throws -> cl_kernel {
        guard let kernel = kernels[name.index] else {
            throw QTaleError.engine("the OpenCL engine has no \(name.rawValue) kernel (Kernels/opencl defines none)")
        }
        return kernel
    }

    // MARK: Sources and building

    /// `(file name, OpenCL C source)` for every kernel file.
    static func sources() throws -> [(name: String, source: String)] {
        guard let folder = ProcessInfo.processInfo.environment["QTALE_KERNELS_DIR"], !folder.isEmpty else {
            return OpenCLKernelSources.files
        }
        let openCLFolder = URL(fileURLWithPath: folder).appendingPathComponent("opencl")
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: openCLFolder.path).filter { $0.hasSuffix(".cl") }.sorted()
        } catch {
            throw QTaleError.io("QTALE_KERNELS_DIR: cannot list \(openCLFolder.path): \(error.localizedDescription)")
        }
        guard !names.isEmpty else { throw QTaleError.io("QTALE_KERNELS_DIR: no .cl files in \(openCLFolder.path)") }
        return try names.map { name in
            var seen: Set<String> = []
            return (name, try inliningIncludes(of: openCLFolder.appendingPathComponent(name).path, root: folder, seen: &seen))
        }
    }

    /// The file's text with each `#include "x"` replaced by `root/x` (once per file), as kernelgen.py does.
    static func inliningIncludes(of path: String, root: String, seen: inout Set<String>) throws -> String {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw QTaleError.io("QTALE_KERNELS_DIR: cannot read \(path): \(error.localizedDescription)")
        }
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("#include"), let open = trimmed.firstIndex(of: "\""),
               let close = trimmed[trimmed.index(after: open)...].firstIndex(of: "\"") {
                let include = URL(fileURLWithPath: root).appendingPathComponent(String(trimmed[trimmed.index(after: open)..<close])).path
                if seen.insert(include).inserted { lines.append(try inliningIncludes(of: include, root: root, seen: &seen)) }
                continue
            }
            lines.append(String(line))
        }
        if lines.last == "" { lines.removeLast() }
        return lines.joined(separator: "\n")
    }

    /// Compiles one source file; a failed build throws with the compiler's log.
    static func build(_ file: (name: String, source: String), library: OpenCLLibrary, context: cl_context,
                      device: OpenCLDevice) throws -> cl_program {
        let api = library.api
        var status: cl_int = 0
        let created: cl_program? = file.source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            var length = strlen(text)
            return api.CreateProgramWithSource!(context, 1, &pointer, &length, &status)
        }
        try OpenCLLibrary.check(status, "clCreateProgramWithSource(\(file.name))")
        guard let program = created else { throw OpenCLLibrary.failure(status, "clCreateProgramWithSource(\(file.name))") }
        var deviceID = device.id
        status = api.BuildProgram!(program, 1, &deviceID, buildOptions(for: device), nil, nil)
        if status != CL_SUCCESS {
            let log = (try? OpenCLLibrary.readString("clGetProgramBuildInfo") {
                api.GetProgramBuildInfo!(program, device.id, cl_program_build_info(CL_PROGRAM_BUILD_LOG), $0, $1, $2)
            }) ?? "(no build log)"
            _ = api.ReleaseProgram!(program)
            throw QTaleError.engine("clBuildProgram(Kernels/opencl/\(file.name)) for \(device.name) failed: "
                                    + "\(OpenCLError.name(status))\n\(log)")
        }
        return program
    }
}

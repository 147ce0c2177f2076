import CVulkan
import Foundation

/// Per-kernel GPU time from timestamp queries, for kernel work: set `QTALE_VULKAN_PROFILE=1` and the
/// engine prints, when it is destroyed, the time each kernel (by work-group grid) took in total.
/// Costs nothing when the variable is unset.
final class VulkanProfiler {
    private let device: VulkanDevice
    private let pool: VkQueryPool
    private let capacity: UInt32 = 8192
    /// Nanoseconds per timestamp tick.
    private let period: Double
    private var labels: [String] = []
    private var totals: [String: (count: Int, nanoseconds: Double)] = [:]

    static var requested: Bool { ProcessInfo.processInfo.environment["QTALE_VULKAN_PROFILE"] != nil }

    init?(device: VulkanDevice) {
        guard device.physical.properties.limits.timestampComputeAndGraphics != 0 else { return nil }
        self.device = device
        period = Double(device.physical.properties.limits.timestampPeriod)
        var info = VkQueryPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
        info.queryType = VK_QUERY_TYPE_TIMESTAMP
        info.queryCount = capacity
        var pool: VkQueryPool?
        guard device.functions.CreateQueryPool!(device.handle, &info, nil, &pool) == VK_SUCCESS, let pool else { return nil }
        self.pool = pool
    }

    deinit {
        let rows = totals.sorted { $0.value.nanoseconds > $1.value.nanoseconds }
        let all = rows.reduce(0) { $0 + $1.value.nanoseconds }
        var report = "Vulkan kernel time (QTALE_VULKAN_PROFILE), total \(String(format: "%.1f", all / 1e6)) ms:\n"
        for (label, value) in rows {
            report += String(format: "%9.2f ms %7d× %8.1f µs  ", value.nanoseconds / 1e6, value.count, value.nanoseconds / 1e3 / Double(value.count)) + label + "\n"
        }
        FileHandle.standardError.write(report.data(using: .utf8)!)
        device.functions.DestroyQueryPool!(device.handle, pool, nil)
    }

    /// At the start of a command buffer: resets the queries and writes the first timestamp.
    func begin(_ buffer: VkCommandBuffer) {
        labels.removeAll(keepingCapacity: true)
        device.functions.CmdResetQueryPool!(buffer, pool, 0, capacity)
        device.functions.CmdWriteTimestamp!(buffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, 0)
    }

    /// After a dispatch: the time since the previous timestamp is charged to `label`.
    func mark(_ buffer: VkCommandBuffer, _ label: @autoclosure () -> String) {
        guard labels.count + 1 < Int(capacity) else { return }
        labels.append(label())
        device.functions.CmdWriteTimestamp!(buffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, UInt32(labels.count))
    }

    /// After the fence: reads the timestamps back.
    func collect() {
        guard !labels.isEmpty else { return }
        var stamps = [UInt64](repeating: 0, count: labels.count + 1)
        let result = stamps.withUnsafeMutableBytes { raw in
            device.functions.GetQueryPoolResults!(device.handle, pool, 0, UInt32(labels.count + 1), raw.count, raw.baseAddress, 8,
                                                 VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue)
        }
        guard result == VK_SUCCESS else { return }
        for (i, label) in labels.enumerated() {
            let ns = Double(stamps[i + 1] &- stamps[i]) * period
            totals[label, default: (0, 0)].count += 1
            totals[label, default: (0, 0)].nanoseconds += ns
        }
        labels.removeAll(keepingCapacity: true)
    }
}

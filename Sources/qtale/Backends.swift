import ArgumentParser
import Foundation
import QTaleCore
import QTaleModel

struct Backends: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the compute engines, their devices and driver versions, and why any is unavailable.")

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Row: Encodable {
        let name: String
        let summary: String
        let available: Bool
        let version: String
        let devices: [String]
        let reason: String?
    }

    func run() throws {
        let rows = EngineRegistry.entries.map { entry in
            let probe = entry.probe()
            return Row(name: entry.name, summary: entry.summary, available: probe.isAvailable, version: probe.version,
                       devices: probe.devices, reason: probe.isAvailable ? nil : probe.unavailableReason ?? "no device found")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console.out(String(decoding: try encoder.encode(rows), as: UTF8.self) + "\n")
            return
        }
        for row in rows {
            Console.out("\(row.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(row.available ? "available  " : "unavailable") \(row.summary)\n")
            if row.available {
                Console.out("           \(row.version)\n")
                for (i, device) in row.devices.enumerated() { Console.out("           --device \(i): \(device)\n") }
            } else {
                Console.out("           \(row.reason ?? "")\n")
            }
        }
    }
}

import Foundation
import QTaleTestSupport
import XCTest

/// Runs the built `qtale` executable as a subprocess.
enum CLI {
    struct Result {
        let status: Int32
        let reason: Process.TerminationReason
        let stdout: String
        let stderr: String

        var summary: String { "exit \(status) (\(reason == .exit ? "exit" : "signal")); stderr: \(stderr.prefix(600)); stdout: \(stdout.prefix(300))" }
    }

    /// Where `qtale` lies: next to the test bundle (on Linux `.build/<config>/`), or `$QTALE_EXECUTABLE`.
    static func executable() throws -> URL {
        let fm = FileManager.default
        if let explicit = ProcessInfo.processInfo.environment["QTALE_EXECUTABLE"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        var directories = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        if let first = CommandLine.arguments.first {
            directories.append(URL(fileURLWithPath: first).deletingLastPathComponent())
        }
        for arg in CommandLine.arguments.dropFirst() where arg.hasSuffix(".xctest") {
            directories.append(URL(fileURLWithPath: arg).deletingLastPathComponent())
        }
        for dir in directories {
            let candidate = dir.appendingPathComponent("qtale")
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               fm.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        throw CLITestError(message: """
            the qtale executable was not found next to the test bundle (looked in \(directories.map(\.path).joined(separator: ", "))); \
            build it with `swift build --build-tests` or set QTALE_EXECUTABLE
            """)
    }

    /// Runs `qtale arguments`, failing the test (not hanging) after `timeout` seconds.
    static func run(_ arguments: [String], timeout: TimeInterval = 120, environment extra: [String: String] = [:],
                    file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        // Never let a test reach the network or a real model cache.
        environment["QTALE_CACHE_DIR"] = TemporaryFiles.path("cache-never-used")
        environment.merge(extra) { $1 }
        process.environment = environment
        let id = UUID().uuidString.prefix(8)
        let outPath = TemporaryFiles.path("stdout-\(id)"), errPath = TemporaryFiles.path("stderr-\(id)")
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
              FileManager.default.createFile(atPath: errPath, contents: nil) else {
            throw CLITestError(message: "cannot create output files in \(TemporaryFiles.directory)")
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                process.waitUntilExit()
                XCTFail("qtale \(arguments.joined(separator: " ")) ran longer than \(timeout) s", file: file, line: line)
                break
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        // Decoded leniently: a byte that is not UTF-8 shows up as U+FFFD instead of emptying the whole stream.
        let stdout = String(decoding: try Data(contentsOf: URL(fileURLWithPath: outPath)), as: UTF8.self)
        let stderr = String(decoding: try Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self)
        return Result(status: process.terminationStatus, reason: process.terminationReason, stdout: stdout, stderr: stderr)
    }

    /// Runs `qtale arguments` and asserts a clean failure: a nonzero exit status (not a signal) and
    /// every phrase on stderr.
    @discardableResult
    static func expectFailure(_ arguments: [String], status expected: Int32? = nil, stderrContains phrases: [String],
                              file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let result = try run(arguments, file: file, line: line)
        let command = "qtale " + arguments.joined(separator: " ")
        XCTAssertEqual(result.reason, .exit, "\(command) was killed by a signal: \(result.summary)", file: file, line: line)
        XCTAssertNotEqual(result.status, 0, "\(command) succeeded: \(result.summary)", file: file, line: line)
        if let expected {
            XCTAssertEqual(result.status, expected, "\(command): \(result.summary)", file: file, line: line)
        }
        for phrase in phrases {
            XCTAssertTrue(result.stderr.contains(phrase), "\(command): stderr lacks \"\(phrase)\": \(result.summary)", file: file, line: line)
        }
        XCTAssertEqual(result.stdout, "", "\(command): a failure printed to stdout", file: file, line: line)
        return result
    }
}

/// Thrown when the executable is missing or its output cannot be captured; XCTest reports it as a failure with this message.
struct CLITestError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

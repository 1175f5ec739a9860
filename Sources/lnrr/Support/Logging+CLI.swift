import Foundation
import ArgumentParser
import Logging

/// `--log-level` for commands that log; logs go to stderr so stdout stays machine-readable.
struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Env: LNRR_LOG.")
    var logLevel: String?

    /// Bootstraps swift-log once for the process.
    func bootstrap(defaultLevel: String = "info") throws {
        let raw = logLevel ?? ProcessInfoEnvironment.value("LNRR_LOG") ?? defaultLevel
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw CLIError("unknown log level '\(raw)': use trace, debug, info, notice, warning, error or critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

enum ProcessInfoEnvironment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}

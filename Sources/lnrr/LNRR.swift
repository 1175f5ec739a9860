import ArgumentParser
import Foundation

/// The `lnrr` command: every subcommand registers here.
struct LNRR: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lnrr",
        abstract: "Record, steer and replay Lightning Network peer traffic (BOLT 8).",
        discussion: """
            lnrr sits between two Lightning nodes as a man-in-the-middle. It terminates the BOLT 8 \
            handshake on both sides with node keys you hold (you run the test nodes), records every \
            decrypted message, lets rules drop, delay, inject or rewrite messages, and replays \
            recordings against a live node.

            Start with `lnrr demo`, then `lnrr help record`.

            Exit codes: 0 success; 1 the operation ran and failed (a replay diverged, a peer failed \
            the connection, a decode found an error); 2 bad usage, bad input files or connection \
            errors.
            """,
        version: LNRRVersion.string,
        subcommands: [
            // Subcommands register here, one line each.
            DemoCommand.self,
            RecordCommand.self,
            ListCommand.self,
            ShowCommand.self,
            DecodeCommand.self,
            EncodeCommand.self,
            RulesCommand.self,
            CtlCommand.self,
            PeerCommand.self,
            KeysCommand.self,
            ReplayCommand.self,
            WiresharkCommand.self,
            ViewCommand.self,
            ExportCommand.self,
        ]
    )
}

/// lnrr's version, written into every recording.
enum LNRRVersion {
    static let string = "0.1.0"
}

/// Entry point. ArgumentParser's own exit code for bad usage is 64; lnrr promises 2 (see `discussion`
/// above), so usage errors are mapped here and every other error keeps the code its command chose.
@main
enum Main {
    static func main() async {
        if let error = CommandWords.check(Array(CommandLine.arguments.dropFirst()), root: LNRR.self) {
            Terminal.standardError.write(error.message)
            Foundation.exit(error.code.rawValue)
        }
        do {
            var command = try LNRR.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            if !error.message.isEmpty { Terminal.standardError.write(error.message) }
            Foundation.exit(error.code.rawValue)
        } catch {
            let code = LNRR.exitCode(for: error)
            // An unknown option explains any other complaint (a misspelt required flag looks
            // missing), so it is reported first, with the nearest real option.
            if code == .validationFailure, let unknown = UnknownOptions.find(in: Array(CommandLine.arguments.dropFirst()), root: LNRR.self) {
                Terminal.standardError.write("Error: \(unknown.message)\nUsage: " + LNRR.usageString(for: unknown.command)
                                             + "\n  See '" + (["lnrr"] + unknown.path + ["--help"]).joined(separator: " ") + "' for more information.")
                Foundation.exit(ExitStatus.usage.rawValue)
            }
            if code == .validationFailure {
                Terminal.standardError.write(LNRR.fullMessage(for: error))
                Foundation.exit(ExitStatus.usage.rawValue)
            }
            LNRR.exit(withError: error)
        }
    }
}

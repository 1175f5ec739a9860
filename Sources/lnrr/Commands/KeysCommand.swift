import ArgumentParser
import Foundation
import LNWire
import LNTransport

/// `lnrr keys`: node key files.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create node key files and show their node ids.",
        discussion: """
            A key file holds a node's 32-byte secret as 64 hex characters and a newline, readable by \
            its owner only (mode 0600). lnrr needs the secrets of the test nodes it stands between: \
            to use an existing node's key, paste its hex (e.g. the value given to Core Lightning's \
            --dev-force-privkey) into a file and `chmod 600` it. Secrets are never printed.
            """,
        subcommands: [New.self, ID.self]
    )

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a fresh node key to FILE (mode 0600) and print its node id.",
            discussion: "Refuses to overwrite an existing file. Creates the file's folder, owner-only (0700), when it is missing.\n\nExample: lnrr keys new --out keys/alice.key"
        )

        @Option(name: .long, help: ArgumentHelp("Where to write the key.", valueName: "FILE"))
        var out: String

        @Flag(name: .long, help: "Print {\"node_id\": ..., \"path\": ...} instead of the bare node id.")
        var json = false

        func run() throws {
            let secret = NodeSecret.random()
            let folder = (out as NSString).deletingLastPathComponent
            if !folder.isEmpty { try FileProblem.makeFolder(folder) }
            do {
                try KeyFile.write(secret, to: out)
            } catch {
                throw CLIError("\(error)")
            }
            if json {
                Terminal.standardOutput.write(JSONLine.object(["node_id": .string(secret.nodeID.hex), "path": .string(out)]))
            } else {
                Terminal.standardOutput.write(secret.nodeID.hex)
            }
        }
    }

    struct ID: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "id",
            abstract: "Print the node id (33-byte compressed public key, hex) of a key file.",
            discussion: "Example: lnrr keys id keys/alice.key"
        )

        @Argument(help: ArgumentHelp("A key file.", valueName: "FILE"))
        var file: String

        @Flag(name: .long, help: "Accept a key file that group or others can read.")
        var insecureKeys = false

        @Flag(name: .long, help: "Print {\"node_id\": ..., \"path\": ...}.")
        var json = false

        func run() throws {
            let secret: NodeSecret
            do {
                secret = try KeyFile.read(path: file, allowInsecure: insecureKeys)
            } catch {
                throw CLIError("\(error)")
            }
            if json {
                Terminal.standardOutput.write(JSONLine.object(["node_id": .string(secret.nodeID.hex), "path": .string(file)]))
            } else {
                Terminal.standardOutput.write(secret.nodeID.hex)
            }
        }
    }
}

import ArgumentParser
import Foundation
import LNProxy
import LNTransport
import LNTransportNIO
import LNWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `lnrr peer`: the embedded test node.
struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Run a minimal Lightning node: BOLT 8, init, ping/pong, scripted messages.",
        discussion: """
            The peer sends `init` when the handshake completes, answers every `ping` with a `pong`, \
            ignores unknown odd messages and fails the connection on unknown even ones (BOLT 1). \
            After the remote's `init` it sends the --send / --send-file messages in order.

            Every message in and out is printed as one JSON object per line on stdout:
              {"dir":"in","type":18,"name":"ping","len":6,"hex":"0012..."}
            The first line is {"event":"connected","node_id":...}; the last {"event":"end",...}. \
            With --listen, a {"event":"listening","address":...} line comes first, with the bound \
            address (port 0 picks a free port).

            With --listen it serves one connection and exits when that connection ends. With \
            --keep-listening it serves every connection that comes, at the same time, until \
            SIGINT or SIGTERM (exit status 0): each line then carries "conn", the connection's \
            number from 1, and a connection that fails (a port probe that closes at once) ends \
            only itself.

            Exit status: 0 for a clean run (ended by --exit-after, --idle-timeout or the remote \
            closing after init), 1 when the connection failed, 2 for usage or connection errors.

            Examples:
              lnrr peer --key keys/bob.key --listen 127.0.0.1:9736 --echo
              lnrr peer --key keys/alice.key --connect $(lnrr keys id keys/bob.key)@127.0.0.1:9736 \\
                        --send 8001cafe --exit-after 2
              lnrr peer --key keys/bob.key --listen 127.0.0.1:9736 --keep-listening --idle-timeout 30s
            """
    )

    @Option(name: .long, help: ArgumentHelp("This node's key file.", valueName: "FILE"))
    var key: String

    @Option(name: .long, help: ArgumentHelp("Accept one connection on this address (port 0: any free port).", valueName: "HOST:PORT"))
    var listen: String?

    @Flag(name: .long, help: "With --listen: serve every connection, concurrently, until SIGINT or SIGTERM.")
    var keepListening = false

    @Option(name: .long, help: ArgumentHelp("Dial this node.", valueName: "NODEID@HOST:PORT"))
    var connect: String?

    @Option(name: .long, help: ArgumentHelp("With --connect: how long the TCP connection may take. \(DurationArgument<Seconds>.helpSuffix)", valueName: "DURATION"))
    var connectTimeout = DurationArgument<Seconds>(10)

    @Option(name: .long, help: ArgumentHelp("A message to send after init: hex of the 2-byte type and payload. Repeatable.", valueName: "HEX"))
    var send: [String] = []

    @Option(name: .long, help: ArgumentHelp("A file of messages to send after init, one hex message per line (# comments and blank lines ignored).", valueName: "FILE"))
    var sendFile: String?

    @Option(name: .long, help: ArgumentHelp("The features bitfield of our init, as hex (default: none).", valueName: "HEX"))
    var features: String = ""

    @Flag(name: .long, help: "Echo every custom message (types 32768-65535) back to its sender.")
    var echo = false

    @Option(name: .long, help: ArgumentHelp("End the connection after receiving N messages (the remote's init counts); without --keep-listening, lnrr then exits.", valueName: "N"))
    var exitAfter: Int?

    @Option(name: .long, help: ArgumentHelp("End the connection when nothing arrives for this long. \(DurationArgument<Seconds>.helpSuffix)", valueName: "DURATION"))
    var idleTimeout: DurationArgument<Seconds>?

    @Option(name: .long, help: ArgumentHelp("Print at most this many bytes of each message as hex; longer ones get a \"sha256\" of the whole message instead of the full hex.", valueName: "BYTES"))
    var hexLimit: Int?

    @Flag(name: .long, help: "Accept a key file that group or others can read.")
    var insecureKeys = false

    func validate() throws {
        if (listen == nil) == (connect == nil) {
            throw ValidationError("give exactly one of --listen HOST:PORT or --connect NODEID@HOST:PORT")
        }
        if let exitAfter, exitAfter < 1 { throw ValidationError("--exit-after must be at least 1") }
        if let idleTimeout, idleTimeout.nanoseconds == 0 { throw ValidationError("--idle-timeout must be longer than 0") }
        if keepListening && listen == nil { throw ValidationError("--keep-listening needs --listen HOST:PORT") }
        if connectTimeout.nanoseconds == 0 { throw ValidationError("--connect-timeout must be longer than 0") }
        if let hexLimit, hexLimit < 0 { throw ValidationError("--hex-limit must be 0 or more") }
    }

    func run() async throws {
        let secret: NodeSecret
        do { secret = try KeyFile.read(path: key, allowInsecure: insecureKeys) } catch { throw CLIError("\(error)") }
        let options = TestPeerOptions(
            features: try parseHex(features, what: "--features"),
            messagesToSend: try messages(),
            echoCustom: echo,
            exitAfter: exitAfter,
            idleTimeout: idleTimeout.map { .nanoseconds(Int64($0.nanoseconds)) }
        )
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await run(secret: secret, options: options, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    private func run(secret: NodeSecret, options: TestPeerOptions, group: EventLoopGroup) async throws {
        // Parse everything before any promise exists, so an early error leaves nothing dangling.
        var dial: PeerAddress?
        var bindTo: HostPort?
        if let connect {
            do { dial = try PeerAddress(parsing: connect) } catch { throw CLIError("--connect: \(error)") }
        }
        if let listen {
            do { bindTo = try HostPort(parsing: listen) } catch { throw CLIError("--listen: \(error)") }
        }
        let printer = PeerPrinter(hexLimit: hexLimit)
        let outcome = group.next().makePromise(of: String?.self)
        let connections = NIOLockedValueBox(0)
        let keepListening = self.keepListening

        func pipeline(_ channel: Channel, role: BOLT8Handler.Role) -> EventLoopFuture<Void> {
            let number = connections.withLockedValue { $0 += 1; return $0 }
            // Without --keep-listening the peer serves exactly one connection; later ones are turned away.
            guard number == 1 || keepListening else {
                return channel.close()
            }
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(BOLT8Handler(role: role, localSecret: secret))
                if let dial {
                    // Dialling: a wrong node id shows as a handshake cut short; say so.
                    try channel.pipeline.syncOperations.addHandler(DialHintHandler(address: dial.hostPort.description, nodeID: dial.nodeID))
                }
                try channel.pipeline.syncOperations.addHandlers([
                    TestPeerHandler(options: options) { event in
                        printer.print(event, connection: keepListening ? number : nil)
                        if case .ended(let failure) = event, !keepListening { outcome.succeed(failure) }
                    },
                ])
            }
        }

        if let address = dial {
            do {
                _ = try await ClientBootstrap(group: group)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connectTimeout(.nanoseconds(Int64(connectTimeout.nanoseconds)))
                    .channelInitializer { pipeline($0, role: .initiator(remote: address.nodeID)) }
                    .connect(host: address.host, port: address.port)
                    .get()
            } catch {
                outcome.succeed(nil)
                throw CLIError(NetworkErrorText.connecting(to: address.hostPort.description, error))
            }
        } else if let address = bindTo {
            // Taken over before the listening line, so a script's SIGTERM right after it is never fatal.
            let stop = keepListening ? SignalWaiter(signals: [SIGINT, SIGTERM]) : nil
            let server: Channel
            do {
                server = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { pipeline($0, role: .responder) }
                    .bind(host: address.host, port: address.port)
                    .get()
            } catch {
                outcome.succeed(nil)
                throw CLIError(NetworkErrorText.listening(on: address.description, error))
            }
            printer.listening(on: server.localAddress, requested: address, nodeID: secret.nodeID)
            if let stop {
                _ = await stop.wait()
                outcome.succeed(nil)
            }
            let failure = try await outcome.futureResult.get()
            try? await server.close()
            if let failure { throw CLIError("peer: \(failure)", code: .failure) }
            return
        }
        if let failure = try await outcome.futureResult.get() {
            throw CLIError("peer: \(failure)", code: .failure)
        }
    }

    private func messages() throws -> [[UInt8]] {
        var result = try send.map { try parseHex($0, what: "--send", minimum: 2) }
        if let sendFile {
            let text: String
            do { text = try String(contentsOfFile: sendFile, encoding: .utf8) } catch {
                throw FileProblem.cannotRead(sendFile, error, what: "--send-file")
            }
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                result.append(try parseHex(trimmed, what: "\(sendFile):\(number + 1)", minimum: 2))
            }
        }
        for message in result where message.count > 65535 {
            throw CLIError("a message of \(message.count) bytes is longer than BOLT 8's 65535")
        }
        return result
    }

    private func parseHex(_ text: String, what: String, minimum: Int = 0) throws -> [UInt8] {
        guard let bytes = HexString.decode(text) else { throw CLIError("\(what): '\(text.prefix(40))' is not hex") }
        guard bytes.count >= minimum else {
            throw CLIError("\(what): a message needs at least its 2-byte type")
        }
        return bytes
    }
}

/// Prints test-peer events as JSON lines. Called on one event loop.
final class PeerPrinter: @unchecked Sendable {
    let hexLimit: Int?

    init(hexLimit: Int?) { self.hexLimit = hexLimit }

    func listening(on address: SocketAddress?, requested: HostPort, nodeID: NodeID) {
        ListeningLine.write(address, requested: requested.description, [("node_id", .string(nodeID.hex))])
    }

    /// Prints one event; `connection` (with --keep-listening) numbers the connection it belongs to.
    func print(_ event: TestPeerEvent, connection: Int? = nil) {
        let conn: [(String, JSONValue)] = connection.map { [("conn", .int($0))] } ?? []
        switch event {
        case .connected(let remote):
            Terminal.standardOutput.write(JSONLine.render(.object([("event", .string("connected")), ("node_id", .string(remote.hex))] + conn)))
        case .message(let incoming, let bytes):
            let type = WireMessage.type(bytes).map(Int.init) ?? -1
            var pairs: [(String, JSONValue)] = conn + [
                ("dir", .string(incoming ? "in" : "out")),
                ("type", .int(type)),
                ("name", .string(type >= 0 ? MessageCatalogue.displayName(of: UInt16(type)) : "runt")),
                ("len", .int(bytes.count)),
            ]
            if let hexLimit, bytes.count > hexLimit {
                pairs.append(("hex", .string(HexString.encode(bytes.prefix(hexLimit)))))
                pairs.append(("sha256", .string(HexString.encode(SHA256Digest.of(bytes)))))
            } else {
                pairs.append(("hex", .string(HexString.encode(bytes))))
            }
            Terminal.standardOutput.write(JSONLine.render(.object(pairs)))
        case .ended(let failure):
            var pairs: [(String, JSONValue)] = [("event", .string("end"))] + conn + [("ok", .bool(failure == nil))]
            if let failure { pairs.append(("error", .string(failure))) }
            Terminal.standardOutput.write(JSONLine.render(.object(pairs)))
        }
    }
}

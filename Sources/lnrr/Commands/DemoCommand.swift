import ArgumentParser
import Foundation
import LNProxy
import LNRecording
import LNTransport
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

/// `lnrr demo`: the whole loop on one machine, with nothing installed but lnrr.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run two embedded test nodes through the recording proxy and show the recording.",
        discussion: """
            Makes fresh keys for nodes a and b, starts b listening, starts the proxy in front of b, \
            and lets a dial the proxy. a and b exchange init, pings and a few custom messages; the \
            proxy records everything. Then the recording is printed the way `lnrr show` prints it, \
            with the path of the file.

            Next steps: `lnrr show FILE --decode`, `tshark -r FILE`, `lnrr help record`.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Where the recording goes.", valueName: "DIR"))
    var out: String = "recordings"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        try logging.bootstrap(defaultLevel: "warning")
        let logger = Logger(label: "lnrr.demo")
        let a = NodeSecret.random(), b = NodeSecret.random()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            try await run(a: a, b: b, group: group, logger: logger)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    private func run(a: NodeSecret, b: NodeSecret, group: EventLoopGroup, logger: Logger) async throws {

        // Node b: an embedded test peer listening on an ephemeral port.
        let bDone = group.next().makePromise(of: String?.self)
        let bServer = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        BOLT8Handler(role: .responder, localSecret: b),
                        TestPeerHandler(options: TestPeerOptions(
                            messagesToSend: [Self.custom(32769, "hello from b")],
                            echoCustom: true,
                            idleTimeout: .seconds(2)
                        )) { event in if case .ended(let failure) = event { bDone.succeed(failure) } },
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let bPort = bServer.localAddress?.port ?? 0
        let bAddress = bServer.localAddress?.hostPortDescription ?? "127.0.0.1:\(bPort)"

        // The proxy in front of b, holding both keys: a transparent session.
        let route = ProxyRoute(listen: try HostPort(parsing: "127.0.0.1:0"),
                               upstream: PeerAddress(nodeID: b.nodeID, host: "127.0.0.1", port: bPort))
        let proxy = try ProxyServer(
            configuration: ProxyConfiguration(routes: [route], recordingDirectory: out, lnrrVersion: LNRRVersion.string),
            keyring: Keyring([a, b], source: "demo"), proxyIdentity: NodeSecret.random(), group: group, logger: logger)
        let proxyAddress = try await proxy.start().first
        let proxyPort = proxyAddress?.port ?? 0

        // Node a: dials the proxy as if it were b, sends pings and custom messages, leaves after the echoes.
        let aDone = group.next().makePromise(of: String?.self)
        let script: [[UInt8]] = [
            [0x00, 0x12, 0x00, 0x08, 0x00, 0x00],  // ping asking for 8 pong bytes
            Self.custom(32771, "custom message 1"),
            Self.custom(32773, "custom message 2"),
            [0x00, 0x12, 0x00, 0x04, 0x00, 0x02, 0xab, 0xcd],
        ]
        _ = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        BOLT8Handler(role: .initiator(remote: b.nodeID), localSecret: a),
                        // init, b's custom, two pongs, two echoes: 6 messages in.
                        TestPeerHandler(options: TestPeerOptions(messagesToSend: script, exitAfter: 6, idleTimeout: .seconds(10))) { event in
                            if case .ended(let failure) = event { aDone.succeed(failure) }
                        },
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: proxyPort).get()

        let aFailure = try await aDone.futureResult.get()
        _ = try await bDone.futureResult.get()
        try? await bServer.close()
        await proxy.shutdown()
        if let aFailure { throw CLIError("demo: node a failed: \(aFailure)", code: .failure) }

        guard let path = proxy.finishedRecordings.last else { throw CLIError("demo: no recording was written in \(out)", code: .failure) }
        let proxyText = proxyAddress?.hostPortDescription ?? "127.0.0.1:\(proxyPort)"
        Terminal.standardOutput.write(Terminal.paint("a = \(a.nodeID.hex)  dialled the proxy at \(proxyText)\n"
                                                     + "b = \(b.nodeID.hex)  listened on \(bAddress)\n", .dim))
        try ShowCommand.render(path: path, options: ShowOptions())
        Terminal.standardOutput.write("\nrecording: \(path)")
        Terminal.standardOutput.write(Terminal.paint("next: lnrr show \(path)   |   lnrr list \(out)   |   tshark -r \(path)", .dim))
    }

    static func custom(_ type: UInt16, _ text: String) -> [UInt8] {
        [UInt8(type >> 8), UInt8(type & 0xff)] + Array(text.utf8)
    }
}

// The nodes the throughput, latency, memory and soak groups run around lnrr: node b listening on
// loopback, and an in-process proxy in front of it.
import Foundation
import LNProxy
import LNTransport
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

/// Node b: a BOLT 8 responder with `secret` on a free loopback port; each accepted connection ends
/// in the handler `sink` gives (one shared handler, or a fresh one per connection).
func listenAsNodeB(group: EventLoopGroup, secret: NodeSecret, backlog: Int32? = nil,
                   sink: @escaping @Sendable () -> any ChannelHandler) async throws -> Channel {
    var bootstrap = ServerBootstrap(group: group).childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    if let backlog { bootstrap = bootstrap.serverChannelOption(.backlog, value: backlog) }
    return try await bootstrap
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([BOLT8Handler(role: .responder, localSecret: secret), sink()])
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// An in-process proxy from a to node b at `upstreamPort`, holding both keys; returns it and its
/// listening port.
func startBenchProxy(group: EventLoopGroup, a: NodeSecret, b: NodeSecret, upstreamPort: Int, recordingDirectory: String?,
                     hook: (any MessageHook)? = nil) async throws -> (ProxyServer, Int) {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let route = ProxyRoute(listen: try HostPort(parsing: "127.0.0.1:0"),
                           upstream: PeerAddress(nodeID: b.nodeID, host: "127.0.0.1", port: upstreamPort))
    var configuration = ProxyConfiguration(routes: [route], recordingDirectory: recordingDirectory, lnrrVersion: "bench")
    configuration.messageHook = hook
    let proxy = try ProxyServer(configuration: configuration, keyring: Keyring([a, b]), proxyIdentity: NodeSecret.random(),
                                group: group, logger: logger)
    return (proxy, try await proxy.start()[0].port!)
}

import ArgumentParser
import Dispatch
import Foundation
import LNProxy
import LNRecording
import LNRules
import LNTransport
import LNTransportNIO
import Logging
import NIOCore
import NIOPosix

/// `lnrr record`: the recording man-in-the-middle.
struct RecordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Stand between Lightning nodes and record every decrypted message.",
        discussion: """
            lnrr listens on --listen and answers each dialer (node a) as the node named in \
            --upstream (node b), using b's secret from the keyring. After the handshake it knows a's \
            node id; if a's secret is in the keyring too, it dials b as a, so b sees a's real node id \
            (transparent). Otherwise it dials with the proxy's own key (--proxy-key) and marks the \
            session non-transparent, or refuses it with --require-transparent.

            Each connection is a session with its own pcapng recording under --out, created \
            owner-only (recordings hold plaintext). Read them with `lnrr list`, `lnrr show` or \
            tshark. SIGINT or SIGTERM ends every session cleanly and closes every file.

            On start, one JSON line per listening address is printed on stdout:
              {"event":"listening","address":"127.0.0.1:9735","upstream":"02ab...@127.0.0.1:9736"}

            Examples:
              lnrr record --listen 127.0.0.1:9735 --upstream 02ab...@127.0.0.1:9736 --keys keys/
              lnrr record --keys keys/ --route 127.0.0.1:7001=02ab...@127.0.0.1:9736 \\
                          --route 127.0.0.1:7002=03cd...@127.0.0.1:9737
            """
    )

    @Option(name: .long, help: ArgumentHelp("Where node a dials in.", valueName: "HOST:PORT"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("The node the proxy fronts (b).", valueName: "NODEID@HOST:PORT"))
    var upstream: String?

    @Option(name: .long, help: ArgumentHelp("Front several nodes from one process: LISTEN=NODEID@HOST:PORT. Repeatable.", valueName: "ROUTE"))
    var route: [String] = []

    @Option(name: .long, help: ArgumentHelp("Keyring: a folder of *.key files (mode 0600) with the secrets of the nodes the proxy may speak as.", valueName: "DIR"))
    var keys: String

    @Option(name: .long, help: ArgumentHelp("Where recordings go.", valueName: "DIR"))
    var out: String = "recordings"

    @Flag(name: .long, help: "Relay without recording (for measuring the proxy itself).")
    var noRecording = false

    @Option(name: .long, help: ArgumentHelp("The proxy's own key for non-transparent sessions; created when absent.", valueName: "FILE"))
    var proxyKey: String?

    @Flag(name: .long, help: "Refuse sessions whose dialer's key is not in the keyring instead of dialing upstream as the proxy.")
    var requireTransparent = false

    @Flag(name: .long, help: "Also record connections that never complete their handshake (forensics). By default they leave one log line and a count (listsessions' failed_handshakes), no file.")
    var recordFailedHandshakes = false

    @Option(name: .long, help: ArgumentHelp("When recordings reach the OS: message (every message, default: survives kill -9), batch (every few ms), none (when buffers fill; fsync at session end always).", valueName: "MODE"))
    var sync: String = "message"

    @Option(name: .long, help: ArgumentHelp("Rules to apply (YAML, see docs/rules.md). SIGHUP reloads the file; a file that no longer validates is refused and the old rules stay.", valueName: "FILE"))
    var rules: String?

    @Option(name: .long, help: ArgumentHelp("Serve JSON-RPC 2.0 on this Unix socket (owner-only): listsessions, sendcustommsg, inject, disconnect, addrule, delrule, listrules, subscribe, and the --plugin methods. Client: `lnrr ctl`; plugins get it as their rpc-file.", valueName: "PATH"))
    var control: String?

    @Option(name: .long, help: ArgumentHelp("Run CMD (via /bin/sh) for each custom message, either direction, with {\"peer_id\",\"direction\",\"payload\"} on stdin; it answers {\"result\":\"continue\"}, {\"result\":\"drop\"} or {\"result\":\"replace\",\"payload\":HEX}. Order per direction is kept.", valueName: "CMD"))
    var custommsgHook: String?

    @Option(name: .long, help: ArgumentHelp("How long a hook (plugin call or --custommsg-hook run) may take before the message continues anyway. \(DurationArgument<Milliseconds>.helpSuffix)", valueName: "DURATION"))
    var hookTimeout = DurationArgument<Milliseconds>(5000)

    @Option(name: .long, help: ArgumentHelp("Start CMD (via /bin/sh) once and speak Core Lightning's plugin protocol to it on its stdin/stdout: hooks custommsg and lnrr_message, notifications, RPC methods on the control socket (docs/plugins.md). Repeatable; hooks are chained in order. A plugin that fails to start is an error (exit 2).", valueName: "CMD"))
    var plugin: [String] = []

    @Option(name: .long, help: ArgumentHelp("A value for an option a plugin declares (repeatable).", valueName: "NAME=VALUE"))
    var pluginOption: [String] = []

    @Flag(name: .long, help: "Accept key files that group or others can read.")
    var insecureKeys = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if route.isEmpty && (listen == nil || upstream == nil) {
            throw ValidationError("give --listen HOST:PORT and --upstream NODEID@HOST:PORT, or one or more --route LISTEN=NODEID@HOST:PORT")
        }
        if !route.isEmpty && (listen != nil || upstream != nil) {
            throw ValidationError("use either --listen/--upstream or --route, not both")
        }
        guard SyncMode(rawValue: sync) != nil else {
            throw ValidationError("--sync must be message, batch or none (got '\(sync)')")
        }
    }

    func run() async throws {
        try logging.bootstrap()
        let logger = Logger(label: "lnrr.record")
        let routes = try parseRoutes()
        if !noRecording { try StartupChecks.checkOutputDirectory(out) }
        StartupChecks.raiseDescriptorLimit(logger: logger, recording: !noRecording)
        let keyring: Keyring
        do { keyring = try Keyring(directory: keys, allowInsecure: insecureKeys) } catch { throw CLIError("\(error)") }
        let identity = try loadProxyIdentity()
        var configuration = ProxyConfiguration(
            routes: routes,
            recordingDirectory: noRecording ? nil : out,
            syncMode: SyncMode(rawValue: sync) ?? .message,
            requireTransparent: requireTransparent,
            lnrrVersion: LNRRVersion.string
        )
        configuration.recordFailedHandshakes = recordFailedHandshakes
        guard hookTimeout.nanoseconds > 0 else { throw CLIError("--hook-timeout must be longer than 0") }
        if let custommsgHook {
            configuration.setCustomMessageHook(command: custommsgHook, timeout: hookTimeout.seconds)
        }
        if let rules {
            let loaded = try Self.loadRules(rules)
            configuration.rules = loaded.rules
            configuration.rulesFile = rules
            configuration.rulesSHA256 = loaded.sha256
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        var plugins: PluginHost?
        if !plugin.isEmpty {
            guard custommsgHook == nil else {
                try? await group.shutdownGracefully()
                throw CLIError("use --plugin or --custommsg-hook, not both (a plugin can register the custommsg hook)")
            }
            let options = try pluginOption.map { text -> (String, String) in
                guard let eq = text.firstIndex(of: "=") else { throw CLIError("--plugin-option '\(text)': expected NAME=VALUE") }
                return (String(text[..<eq]), String(text[text.index(after: eq)...]))
            }
            var settings = PluginHost.Configuration(commands: plugin, controlSocket: control, options: options,
                                                    hookTimeout: .nanoseconds(Int64(hookTimeout.nanoseconds)), lnrrVersion: LNRRVersion.string)
            settings.startupTimeout = .seconds(60)
            do { plugins = try await PluginHost.start(settings, group: group, logger: logger) } catch {
                try? await group.shutdownGracefully()
                throw CLIError("\(error)")
            }
            configuration.messageHook = plugins
        }
        let server: ProxyServer
        do {
            server = try ProxyServer(configuration: configuration, keyring: keyring, proxyIdentity: identity, group: group, logger: logger)
        } catch {
            throw CLIError("\(error)")
        }
        plugins?.attach(to: server)
        let stop = SignalWaiter(signals: [SIGINT, SIGTERM])
        let bound: [SocketAddress]
        do { bound = try await server.start() } catch {
            await plugins?.stop()
            try? await group.shutdownGracefully()
            throw CLIError("\(error)")
        }
        var controlServer: ControlServer?
        if let control {
            let controlling = ControlServer(proxy: server, path: control)
            do { try await controlling.start() } catch {
                await plugins?.stop()
                await stopAll(server: nil, proxy: server, group: group)
                throw CLIError("cannot open the control socket \(control): \(NetworkErrorText.reason(error, listening: true))")
            }
            controlServer = controlling
        }
        for (address, route) in zip(bound, routes) {
            ListeningLine.write(address, requested: route.listen.description,
                                [("upstream", .string(route.upstream.description)), ("recordings", noRecording ? .null : .string(out))])
        }
        let hangup = SignalWaiter(signals: [SIGHUP])
        if let rules {
            Task.detached {
                while true {
                    _ = await hangup.wait()
                    do {
                        let loaded = try Self.loadRules(rules)
                        server.reload(rules: loaded.rules, file: rules, sha256: loaded.sha256)
                        logger.notice("rules reloaded from \(rules): \(loaded.rules.rules.count) rules")
                    } catch {
                        logger.error("rules not reloaded, the old rules stay: \(error)")
                    }
                }
            }
        }
        let signal = await stop.wait()
        logger.info("received signal \(signal); ending every session")
        await controlServer?.close()
        await server.shutdown()
        Self.logFailedHandshakes(server, logger)
        // Plugins stop after the sessions: a session ending may still ask them about a message.
        await plugins?.stop()
        try? await group.shutdownGracefully()
    }

    private func stopAll(server: ControlServer?, proxy: ProxyServer, group: EventLoopGroup) async {
        await server?.close()
        await proxy.shutdown()
        try? await group.shutdownGracefully()
    }

    /// The shutdown summary of connections that were counted, not recorded.
    private static func logFailedHandshakes(_ proxy: ProxyServer, _ logger: Logger) {
        guard proxy.failedHandshakes > 0 else { return }
        logger.notice("\(proxy.failedHandshakes) connections ended before their handshake completed (not recorded)")
    }

    private func parseRoutes() throws -> [ProxyRoute] {
        do {
            if route.isEmpty, let listen, let upstream {
                return [ProxyRoute(listen: try HostPort(parsing: listen), upstream: try PeerAddress(parsing: upstream))]
            }
            return try route.map { text in
                guard let eq = text.firstIndex(of: "=") else {
                    throw CLIError("--route '\(text)': expected LISTEN=NODEID@HOST:PORT")
                }
                return ProxyRoute(listen: try HostPort(parsing: String(text[..<eq])),
                                  upstream: try PeerAddress(parsing: String(text[text.index(after: eq)...])))
            }
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)")
        }
    }

    /// Parses and validates a rule file; every diagnostic goes to stderr.
    static func loadRules(_ path: String) throws -> (rules: RuleSet, sha256: String) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FileProblem.cannotRead(path, error, what: "rule file")
        }
        let (set, diagnostics) = RuleParser.parse(yaml: String(decoding: data, as: UTF8.self), file: path)
        for d in diagnostics { Terminal.standardError.write(d.description) }
        guard let set else { throw CLIError("\(path) has errors; see above (check it with `lnrr rules check \(path)`)") }
        return (set, HexString.encode(SHA256Digest.of(Array(data))))
    }

    private func loadProxyIdentity() throws -> NodeSecret {
        let path = proxyKey ?? (keys as NSString).appendingPathComponent("proxy.key")
        if FileManager.default.fileExists(atPath: path) {
            do { return try KeyFile.read(path: path, allowInsecure: insecureKeys) } catch { throw CLIError("\(error)") }
        }
        let secret = NodeSecret.random()
        do { try KeyFile.write(secret, to: path) } catch { throw CLIError("cannot create the proxy key \(path): \(error)") }
        return secret
    }
}

/// Delivers the given signals to async code without parking a thread: each signal's default action
/// is turned off and a dispatch signal source on one serial queue yields its number into a bounded
/// stream that ``wait()`` awaits. Signals that arrive with nobody waiting are kept (the newest 8).
/// One task at a time may wait on a waiter.
///
/// `@unchecked Sendable`: `sources` is only kept alive (never touched after `init`); the stream is Sendable.
final class SignalWaiter: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    private let received: AsyncStream<Int32>

    init(signals: [Int32]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(8))
        let queue = DispatchQueue(label: "lnrr.signals")
        received = stream
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    deinit {
        for source in sources { source.cancel() }
    }

    /// The number of the next signal that arrives (or arrived while nobody waited).
    func wait() async -> Int32 {
        var next = received.makeAsyncIterator()
        return await next.next() ?? 0
    }
}

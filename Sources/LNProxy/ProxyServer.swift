import Logging
import LNRecording
import LNRules
import LNTransport
import LNTransportNIO
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One listening address and the node it fronts.
public struct ProxyRoute: Sendable, CustomStringConvertible {
    public var listen: HostPort
    public var upstream: PeerAddress

    public init(listen: HostPort, upstream: PeerAddress) {
        self.listen = listen
        self.upstream = upstream
    }

    public var description: String { "\(listen)=\(upstream)" }
}

/// Everything `lnrr record` is told.
public struct ProxyConfiguration: Sendable {
    public var routes: [ProxyRoute]
    /// Where recordings go; `nil` relays without recording (used by benchmarks).
    public var recordingDirectory: String?
    public var syncMode: SyncMode
    /// Refuse sessions whose dialer's key is not in the keyring instead of going non-transparent.
    public var requireTransparent: Bool
    public var connectTimeout: TimeAmount
    /// How long each side may take to complete its BOLT 8 handshake.
    public var handshakeTimeout: TimeAmount = .seconds(30)
    public var writeBufferWaterMark: ChannelOptions.Types.WriteBufferWaterMark
    /// `--record-failed-handshakes`: record connections that never complete a's handshake too
    /// (forensics); by default they are only logged and counted.
    public var recordFailedHandshakes = false
    public var lnrrVersion: String
    /// What sessions consult about messages: the `--plugin`s (`PluginHost`) or the one-shot
    /// `--custommsg-hook` command (`OneShotHook`); `nil`: nothing, messages go straight through.
    public var messageHook: (any MessageHook)?

    /// Runs `command` (through /bin/sh) for each custom message, waiting at most `timeout` seconds.
    public mutating func setCustomMessageHook(command: String, timeout: Double) {
        messageHook = OneShotHook(command: command, timeout: timeout)
    }

    /// Rules applied to every session (replaceable at run time with `ProxyServer.reload`).
    public var rules: RuleSet?
    /// The rule file and the SHA-256 of its bytes, written into each recording's metadata.
    public var rulesFile: String?
    public var rulesSHA256: String?

    public init(routes: [ProxyRoute], recordingDirectory: String?, syncMode: SyncMode = .message,
                requireTransparent: Bool = false, connectTimeout: TimeAmount = .seconds(10),
                lnrrVersion: String) {
        self.routes = routes
        self.recordingDirectory = recordingDirectory
        self.syncMode = syncMode
        self.requireTransparent = requireTransparent
        self.connectTimeout = connectTimeout
        self.writeBufferWaterMark = .init(low: 64 * 1024, high: 256 * 1024)
        self.lnrrVersion = lnrrVersion
    }
}

/// Services every session shares.
final class ProxyContext: Sendable {
    let configuration: ProxyConfiguration
    let keyring: Keyring
    /// The identity used to dial upstream when the dialer's key is not held (non-transparent).
    let proxyIdentity: NodeSecret
    let registry: SessionRegistry
    let logger: Logger
    /// Live events for control-socket subscribers.
    let events = EventBus()
    /// `ProxySession` objects alive, ended or not: once every session has ended it must fall to 0,
    /// or something keeps sessions (and their buffers) after they end.
    let sessionsInMemory = NIOLockedValueBox(0)
    /// The rules new sessions start with, and their source.
    let currentRules: NIOLockedValueBox<(rules: RuleSet?, file: String?, sha256: String?)>

    init(configuration: ProxyConfiguration, keyring: Keyring, proxyIdentity: NodeSecret, logger: Logger) {
        self.configuration = configuration
        self.keyring = keyring
        self.proxyIdentity = proxyIdentity
        self.registry = SessionRegistry()
        self.logger = logger
        self.currentRules = NIOLockedValueBox((configuration.rules, configuration.rulesFile, configuration.rulesSHA256))
    }
}

/// Live sessions, for `listsessions` and shutdown. Sessions run on many event loops, hence the locks:
/// every stored property is a `NIOLockedValueBox`, so the checker can prove it `Sendable`.
final class SessionRegistry: Sendable {
    private let state = NIOLockedValueBox<(next: Int, sessions: [Int: ProxySession])>((1, [:]))
    private let emptied = NIOLockedValueBox<[EventLoopPromise<Void>]>([])

    private let failedHandshakes = NIOLockedValueBox(0)

    /// Connections that ended before a's handshake completed (not recorded unless asked).
    var failedHandshakeCount: Int { failedHandshakes.withLockedValue { $0 } }

    func countFailedHandshake() {
        failedHandshakes.withLockedValue { $0 += 1 }
    }

    func nextID() -> Int {
        state.withLockedValue { value in
            defer { value.next += 1 }
            return value.next
        }
    }

    func add(_ session: ProxySession) {
        state.withLockedValue { $0.sessions[session.id] = session }
    }

    /// Paths of the last recordings whose sessions have ended, in the order they ended: bounded,
    /// so that a long-running proxy keeps nothing per past session.
    private let finished = NIOLockedValueBox<[String]>([])
    static let finishedKept = 64

    var finishedRecordings: [String] { finished.withLockedValue { $0 } }

    func remove(_ session: ProxySession, recording: String? = nil) {
        if let recording {
            finished.withLockedValue {
                if $0.count >= Self.finishedKept { $0.removeFirst($0.count - Self.finishedKept + 1) }
                $0.append(recording)
            }
        }
        let isEmpty = state.withLockedValue { value -> Bool in
            value.sessions[session.id] = nil
            return value.sessions.isEmpty
        }
        if isEmpty {
            let waiters = emptied.withLockedValue { waiters in
                defer { waiters.removeAll() }
                return waiters
            }
            waiters.forEach { $0.succeed(()) }
        }
    }

    var all: [ProxySession] { state.withLockedValue { Array($0.sessions.values).sorted { $0.id < $1.id } } }

    /// Completes once no session is left.
    func whenEmpty(on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let isEmpty = state.withLockedValue { $0.sessions.isEmpty }
        if isEmpty {
            promise.succeed(())
        } else {
            emptied.withLockedValue { $0.append(promise) }
            // A session may have ended between the check and the append.
            if state.withLockedValue({ $0.sessions.isEmpty }) { promise.succeed(()) }
        }
        return promise.futureResult
    }
}

/// The recording man-in-the-middle: listens on each route, and for each dialer opens a session.
public final class ProxyServer: Sendable {
    let context: ProxyContext
    let group: EventLoopGroup
    private let serverChannels = NIOLockedValueBox<[Channel]>([])

    /// Checks that every fronted node's key is held; does not bind yet.
    public init(configuration: ProxyConfiguration, keyring: Keyring, proxyIdentity: NodeSecret,
                group: EventLoopGroup, logger: Logger) throws {
        for route in configuration.routes where keyring.secret(for: route.upstream.nodeID) == nil {
            throw KeyringError.missingKey(route.upstream.nodeID, keyring: keyring.source)
        }
        self.context = ProxyContext(configuration: configuration, keyring: keyring, proxyIdentity: proxyIdentity, logger: logger)
        self.group = group
        baseRules.withLockedValue { $0 = configuration.rules }
        ruleSource.withLockedValue { $0 = (configuration.rulesFile, configuration.rulesSHA256) }
    }

    /// Binds every route. Returns the bound addresses (a port of 0 binds an ephemeral port).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        for route in context.configuration.routes {
            let channel = try await bind(route)
            serverChannels.withLockedValue { $0.append(channel) }
            if let address = channel.localAddress { bound.append(address) }
            context.logger.info("listening", metadata: ["listen": "\(channel.localAddress?.hostPortDescription ?? route.listen.description)", "upstream": "\(route.upstream)"])
        }
        return bound
    }

    private func bind(_ route: ProxyRoute) async throws -> Channel {
        guard let secret = context.keyring.secret(for: route.upstream.nodeID) else {
            throw KeyringError.missingKey(route.upstream.nodeID, keyring: context.keyring.source)
        }
        let context = self.context
        do {
            return try await bootstrap(route, secret: secret, context: context)
                .bind(host: route.listen.host, port: route.listen.port)
                .get()
        } catch {
            throw ListenError(address: route.listen.description, underlying: error)
        }
    }

    private func bootstrap(_ route: ProxyRoute, secret: NodeSecret, context: ProxyContext) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: context.configuration.writeBufferWaterMark)
            .childChannelInitializer { channel in
                // Port 0 binds an ephemeral port: sessions (and their recordings) name the real one.
                var bound = route
                if bound.listen.port == 0, let port = channel.localAddress?.port { bound.listen.port = port }
                let session = ProxySession(id: context.registry.nextID(), route: bound, eventLoop: channel.eventLoop, context: context)
                context.registry.add(session)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        BOLT8Handler(role: .responder, localSecret: secret),
                        SideHandler(side: .a, session: session),
                    ])
                }
            }
    }

    /// A listening address that could not be bound, said as `NetworkErrorText` says it.
    public struct ListenError: Error, CustomStringConvertible {
        public var address: String
        public var underlying: Error
        public var description: String { NetworkErrorText.listening(on: address, underlying) }
    }

    /// Recordings of the last sessions that have ended (at most 64), oldest first.
    public var finishedRecordings: [String] { context.registry.finishedRecordings }

    /// Connections that ended before a's handshake completed: counted, not recorded (unless
    /// `recordFailedHandshakes`).
    public var failedHandshakes: Int { context.registry.failedHandshakeCount }

    /// Session objects still in memory, live or ended (0 once every session has ended and been freed).
    public var sessionsInMemory: Int { context.sessionsInMemory.withLockedValue { $0 } }

    /// Snapshots of every live session.
    public func sessions() async -> [SessionSnapshot] {
        var result: [SessionSnapshot] = []
        for session in context.registry.all {
            if let snapshot = try? await session.eventLoop.submit({ session.snapshot() }).get() {
                result.append(snapshot)
            }
        }
        return result
    }

    /// Replaces the rules: new sessions start with them and live sessions switch to them (with fresh
    /// counters) at their next message.
    public func reload(rules: RuleSet?, file: String?, sha256: String?) {
        baseRules.withLockedValue { $0 = rules }
        ruleSource.withLockedValue { $0 = (file, sha256) }
        publishRules()
    }

    /// The rule file's rules, and the rules added over the control socket on top of them.
    let baseRules = NIOLockedValueBox<RuleSet?>(nil)
    let extraRules = NIOLockedValueBox<[Rule]>([])
    private let ruleSource = NIOLockedValueBox<(String?, String?)>((nil, nil))

    /// Adds a rule after the file's; fails if the name is taken.
    func addRule(_ rule: Rule) throws {
        guard !allRules().rules.contains(where: { $0.name == rule.name }) else {
            throw ControlError.invalid("a rule named '\(rule.name)' exists; delrule it first")
        }
        extraRules.withLockedValue { $0.append(rule) }
        publishRules()
    }

    /// Removes a rule added over the control socket.
    func deleteRule(named name: String) throws {
        let removed = extraRules.withLockedValue { rules -> Bool in
            let before = rules.count
            rules.removeAll { $0.name == name }
            return rules.count != before
        }
        guard removed else {
            throw ControlError.invalid("no rule named '\(name)' was added over the socket (rules from the file change with the file and SIGHUP)")
        }
        publishRules()
    }

    func allRules() -> RuleSet {
        var set = baseRules.withLockedValue { $0 } ?? RuleSet()
        set.rules += extraRules.withLockedValue { $0 }
        return set
    }

    private func publishRules() {
        let set = allRules()
        let rules: RuleSet? = set.rules.isEmpty && baseRules.withLockedValue({ $0 }) == nil ? nil : set
        let (file, sha256) = ruleSource.withLockedValue { $0 }
        context.currentRules.withLockedValue { $0 = (rules, file, sha256) }
        for session in context.registry.all {
            session.eventLoop.execute { session.setRules(rules, file: file, sha256: sha256) }
        }
    }

    /// Stops listening, ends every session (recorded as `shutdown`) and waits until every recording
    /// is closed.
    public func shutdown() async {
        let channels = serverChannels.withLockedValue { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in channels {
            try? await channel.close()
        }
        for session in context.registry.all {
            session.eventLoop.execute {
                session.shutdown()
            }
        }
        try? await context.registry.whenEmpty(on: group.next()).get()
    }
}

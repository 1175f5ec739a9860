import Foundation
import LNRules
import LNTransport
import LNWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `lnrr record --control PATH`: a JSON-RPC 2.0 service on an owner-only Unix socket, one request
/// per line, in the manner of lightningd's RPC socket. Methods: listsessions, sendcustommsg, inject,
/// disconnect, addrule, delrule, listrules, subscribe.
public final class ControlServer: Sendable {
    let proxy: ProxyServer
    let path: String
    private let channel: NIOLockedValueBox<Channel?> = NIOLockedValueBox(nil)

    public init(proxy: ProxyServer, path: String) {
        self.proxy = proxy
        self.path = path
    }

    /// Binds the socket (mode 0600: it can steer every session) and serves until `close()`.
    public func start() async throws {
        if FileManager.default.fileExists(atPath: path) {
            var info = stat()
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw ControlError.invalid("\(path) exists and is not a socket; refusing to replace it")
            }
            unlink(path)
        }
        // The socket is created with the process umask; narrow it so it is never group/world accessible.
        let previous = umask(0o077)
        defer { umask(previous) }
        let server = self
        let bound = try await ServerBootstrap(group: proxy.group)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(LineDecoder()),
                        ControlConnectionHandler(server: server),
                    ])
                }
            }
            .bind(unixDomainSocketPath: path)
            .get()
        chmod(path, 0o600)
        channel.withLockedValue { $0 = bound }
    }

    public func close() async {
        let bound = channel.withLockedValue { c in defer { c = nil }; return c }
        try? await bound?.close()
        unlink(path)
    }

    // MARK: Methods

    func call(_ method: String, _ params: JSONValue, subscribe: @escaping (ControlEvent) -> Void) async throws -> JSONValue {
        switch method {
        case "listsessions":
            let sessions = await proxy.sessions()
            return .object([("sessions", .array(sessions.map(Self.json)))])
        case "sendcustommsg":
            let message = try Self.hexParam(params, "msg")
            let type = UInt16(message[0]) << 8 | UInt16(message[1])
            if MessageCatalogue.spec(of: type) != nil && params["force"] != .bool(true) { throw ControlError.refusedType(type) }
            let (session, direction) = try await target(params)
            try await session.eventLoop.submit { try session.injectFromControl(message, direction, source: "sendcustommsg") }.get()
            return .object([("status", .string("Message sent")), ("session", .integer(String(session.id))), ("direction", .string(direction.rawValue))])
        case "inject":
            let message: [UInt8]
            if case .string(let name)? = params["name"] {
                do { message = try WireCodec.encode(name: name, fields: params["fields"] ?? .object([])) } catch { throw ControlError.invalid("\(error)") }
            } else {
                message = try Self.hexParam(params, "msg")
            }
            let (session, direction) = try await target(params)
            try await session.eventLoop.submit { try session.injectFromControl(message, direction, source: "inject") }.get()
            return .object([("status", .string("injected")), ("session", .integer(String(session.id))), ("hex", .string(HexString.encode(message)))])
        case "disconnect":
            let (session, _) = try await target(params, needDirection: false)
            session.eventLoop.execute { session.disconnectFromControl() }
            return .object([("status", .string("disconnected")), ("session", .integer(String(session.id)))])
        case "addrule":
            guard case .string(let yaml)? = params["rule"] ?? params["yaml"] else {
                throw ControlError.invalid("addrule needs `rule`: one rule as YAML or JSON text, e.g. {\"name\":\"x\",\"match\":{\"type\":\"ping\"},\"action\":\"drop\"}")
            }
            let (set, diagnostics) = RuleParser.parse(yaml: "rules:\n  - " + yaml.replacingOccurrences(of: "\n", with: "\n    "), file: "addrule")
            guard let rule = set?.rules.first else {
                throw ControlError.invalid(diagnostics.map(\.description).joined(separator: "; "))
            }
            try proxy.addRule(rule)
            return .object([("added", .string(rule.name)), ("rules", .integer(String(proxy.allRules().rules.count)))])
        case "delrule":
            guard case .string(let name)? = params["name"] else { throw ControlError.invalid("delrule needs `name`") }
            try proxy.deleteRule(named: name)
            return .object([("deleted", .string(name))])
        case "listrules":
            let file = proxy.context.currentRules.withLockedValue { $0.file }
            let extra = Set(proxy.extraRules.withLockedValue { $0.map(\.name) })
            return .object([("rules", .array(proxy.allRules().rules.map { rule in
                .object([("name", .string(rule.name)), ("source", .string(extra.contains(rule.name) ? "control" : file ?? "file")),
                         ("action", .string(Self.describe(rule.action)))])
            }))])
        case "subscribe":
            let id = proxy.context.events.subscribe(subscribe)
            return .object([("subscribed", .bool(true)), ("subscription", .integer(String(id)))])
        default:
            throw RPCFailure(code: -32601, message: "method not found: \(method); methods are listsessions, sendcustommsg, inject, disconnect, addrule, delrule, listrules, subscribe")
        }
    }

    /// The session a request names (`session` id, or `node_id` of a or b) and the direction to send.
    private func target(_ params: JSONValue, needDirection: Bool = true) async throws -> (ProxySession, Direction) {
        let sessions = proxy.context.registry.all
        var direction: Direction?
        if case .string(let d)? = params["direction"] {
            guard let parsed = Direction(rawValue: d) else { throw ControlError.invalid("direction must be a->b or b->a") }
            direction = parsed
        }
        if let sessionParam = params["session"] {
            guard case .integer(let text) = sessionParam, let id = Int(text) else { throw ControlError.invalid("session must be a number") }
            guard let session = sessions.first(where: { $0.id == id }) else { throw ControlError.noSuchSession("session \(id)") }
            guard let direction = direction ?? (needDirection ? nil : .aToB) else { throw ControlError.invalid("give direction a->b or b->a with session") }
            return (session, direction)
        }
        guard case .string(let hex)? = params["node_id"], let node = try? NodeID(hex: hex) else {
            throw ControlError.invalid("give `session` (with `direction`) or `node_id` (the node the message goes to)")
        }
        // Like CLN's sendcustommsg: the message goes *to* node_id, from the other side of its session.
        for session in sessions.reversed() {
            let snapshot = try await session.eventLoop.submit { session.snapshot() }.get()
            if snapshot.nodeB == node { return (session, direction ?? .aToB) }
            if snapshot.nodeA == node { return (session, direction ?? .bToA) }
        }
        throw ControlError.noSuchSession(hex)
    }

    static func hexParam(_ params: JSONValue, _ key: String) throws -> [UInt8] {
        guard case .string(let text)? = params[key] else { throw ControlError.invalid("`\(key)` is required: hex of the 2-byte type and payload, without length") }
        guard let bytes = HexString.decode(text), bytes.count >= 2 else { throw ControlError.invalid("`\(key)` must be hex of at least the 2-byte type") }
        guard bytes.count <= 65535 else { throw ControlError.invalid("`\(key)` is longer than BOLT 8's 65535 bytes") }
        return bytes
    }

    static func json(_ s: SessionSnapshot) -> JSONValue {
        .object([
            ("id", .integer(String(s.id))),
            ("node_a", s.nodeA.map { .string($0.hex) } ?? .null),
            ("node_b", .string(s.nodeB.hex)),
            ("listen", .string(s.listen)), ("upstream", .string(s.upstream)),
            ("transparent", .bool(s.transparent)), ("connected", .bool(s.connected)),
            ("started_ns", .integer(String(s.startedNanos))),
            ("messages_a_to_b", .integer(String(s.messagesAToB))), ("messages_b_to_a", .integer(String(s.messagesBToA))),
            ("phase", .string(s.phase)),
            ("channels", .array(s.channels.map { .object([("channel_id", .string($0.0)), ("phase", .string($0.1))]) })),
            ("recording", s.recording.map { .string($0) } ?? .null),
        ])
    }

    static func describe(_ action: RuleAction) -> String {
        switch action {
        case .forward: return "forward"
        case .drop: return "drop"
        case .delay(let ms): return "delay \(ms) ms"
        case .inject(let i): return "inject \(HexString.encode(i.message))"
        case .replace: return "replace"
        case .duplicate: return "duplicate"
        case .disconnect(let k): return "disconnect \(k.rawValue)"
        case .mark(let t): return "mark \(t)"
        }
    }
}

/// A JSON-RPC error with its code.
struct RPCFailure: Error {
    var code: Int
    var message: String
}

/// Splits the byte stream into lines (one JSON-RPC request each); a line over 1 MiB is an error.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 1 << 20 { throw ControlError.invalid("request line longer than 1 MiB") }
            return .needMoreData
        }
        let line = buffer.readSlice(length: newline - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// One client connection: parses requests, answers them in order, streams events after `subscribe`.
final class ControlConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: ControlServer
    private var subscription: Int?

    init(server: ControlServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = String(buffer: unwrapInboundIn(data)).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !line.isEmpty else { return }
        let channel = context.channel
        let request: JSONValue
        do { request = try JSONValue.parse(line) } catch {
            send(.object([("jsonrpc", .string("2.0")), ("id", .null), ("error", .object([("code", .integer("-32700")), ("message", .string("parse error: \(error)"))]))]), on: channel)
            return
        }
        let id = request["id"] ?? .null
        guard case .string(let method)? = request["method"] else {
            send(.object([("jsonrpc", .string("2.0")), ("id", id), ("error", .object([("code", .integer("-32600")), ("message", .string("invalid request: `method` is required"))]))]), on: channel)
            return
        }
        let params = request["params"] ?? .object([])
        let loop = context.eventLoop
        let server = self.server
        let promise = loop.makePromise(of: JSONValue.self)
        promise.completeWithTask {
            try await server.call(method, params) { event in
                var buffer = channel.allocator.buffer(capacity: event.utf8.count + 64)
                buffer.writeString("{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":\(event)}\n")
                channel.writeAndFlush(buffer, promise: nil)
            }
        }
        promise.futureResult.whenComplete { [weak self] result in
            switch result {
            case .success(let value):
                if method == "subscribe", case .integer(let sub)? = value["subscription"] { self?.subscription = Int(sub) }
                self?.send(.object([("jsonrpc", .string("2.0")), ("id", id), ("result", value)]), on: channel)
            case .failure(let error):
                let code = (error as? RPCFailure)?.code ?? -1
                let message = (error as? RPCFailure)?.message ?? "\(error)"
                self?.send(.object([("jsonrpc", .string("2.0")), ("id", id), ("error", .object([("code", .integer(String(code))), ("message", .string(message))]))]), on: channel)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let subscription { server.proxy.context.events.unsubscribe(subscription) }
        context.fireChannelInactive()
    }

    private func send(_ value: JSONValue, on channel: Channel) {
        var text = value.description
        text += "\n"
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.writeAndFlush(buffer, promise: nil)
    }
}

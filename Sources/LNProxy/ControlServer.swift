import Foundation
import LNRules
import LNTransport
import LNWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// `lnrr record --control PATH`: a JSON-RPC 2.0 service on an owner-only Unix socket, framed as
/// lightningd's RPC socket is (requests are JSON objects, with or without newlines; each answer is
/// followed by a blank line), so pyln-client's `LightningRpc` can drive it. Methods: listsessions,
/// sendcustommsg, inject, disconnect, addrule, delrule, listrules, subscribe (and notifications).
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
                        ByteToMessageHandler(JSONTextDecoder()),
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

    /// Every method with its parameters, in the order positional (array) `params` fill them.
    static let methods: KeyValuePairs<String, [String]> = [
        "listsessions": [],
        "sendcustommsg": ["node_id", "msg", "force", "session", "direction"],
        "inject": ["session", "direction", "msg", "name", "fields", "node_id"],
        // `id` and `force` are Core Lightning's `disconnect` parameters (pyln-client's `disconnect()`).
        "disconnect": ["id", "force", "session", "node_id"],
        "addrule": ["rule", "yaml"],
        "delrule": ["name"],
        "addfault": ["fault", "direction", "name", "at"],
        "delfault": ["name"],
        "listrules": [],
        "subscribe": ["count", "timeout"],
        // Core Lightning's opt-in for progress notifications, sent by pyln-client's `notify()`.
        "notifications": ["enable"],
    ]

    static var methodNames: [String] { methods.map(\.key) }

    /// Checks `params` against the method's parameters: an object with known keys, an array filled
    /// in the method's order, or nothing. Unknown names are errors with the nearest known one.
    static func parameters(_ method: String, _ raw: JSONValue?) throws -> RPCParams {
        guard let names = methods.first(where: { $0.key == method })?.value else {
            let near = Suggestions.nearest(method, in: methodNames).first
            throw RPCFailure(.methodNotFound, "method not found: \(method)" + (near.map { " (did you mean '\($0)'?)" } ?? "")
                             + "; methods are \(methodNames.joined(separator: ", "))")
        }
        switch raw {
        case nil, .null?:
            return RPCParams(method: method, pairs: [])
        case .array(let values)?:
            guard values.count <= names.count else {
                throw RPCFailure(.invalidParams, "\(method) takes at most \(names.count) positional parameters (\(names.joined(separator: ", "))); got \(values.count)")
            }
            return RPCParams(method: method, pairs: Array(zip(names, values)))
        case .object(let pairs)?:
            for (key, _) in pairs where !names.contains(key) {
                let near = Suggestions.nearest(key, in: names).first
                throw RPCFailure(.invalidParams, "unknown parameter '\(key)' for \(method)" + (near.map { " (did you mean '\($0)'?)" } ?? "")
                                 + (names.isEmpty ? "; it takes none" : "; its parameters are \(names.joined(separator: ", "))"))
            }
            return RPCParams(method: method, pairs: pairs)
        default:
            throw RPCFailure(.invalidRequest, "`params` must be an object (named) or an array (positional)")
        }
    }

    /// Runs one method (every method but `subscribe` and `notifications`, which the connection runs).
    func call(_ method: String, _ params: RPCParams) async throws -> JSONValue {
        switch method {
        case "listsessions":
            let sessions = await proxy.sessions()
            return .object([("sessions", .array(sessions.map(Self.json))),
                            ("failed_handshakes", .integer(String(proxy.failedHandshakes))),
                            ("sessions_in_memory", .integer(String(proxy.sessionsInMemory)))])
        case "sendcustommsg":
            let message = try Self.hexParam(params, "msg")
            let type = WireMessage.type(message) ?? 0 // hexParam guarantees the 2 type bytes
            if MessageCatalogue.spec(of: type) != nil, try params.bool("force") != true { throw ControlError.refusedType(type) }
            let (session, direction) = try await target(params)
            try await session.eventLoop.submit { try session.injectFromControl(message, direction, source: "sendcustommsg") }.get()
            return .object([("status", .string("Message sent")), ("session", .integer(String(session.id))), ("direction", .string(direction.rawValue))])
        case "inject":
            let message: [UInt8]
            if let name = try params.string("name") {
                do { message = try WireCodec.encode(name: name, fields: params["fields"] ?? .object([])) } catch {
                    throw RPCFailure(.invalidParams, "cannot build \(name): \(error)")
                }
            } else {
                if params["fields"] != nil { throw RPCFailure(.invalidParams, "`fields` goes with `name` (a BOLT message name); with `msg` give the whole message as hex") }
                message = try Self.hexParam(params, "msg")
            }
            let (session, direction) = try await target(params)
            try await session.eventLoop.submit { try session.injectFromControl(message, direction, source: "inject") }.get()
            return .object([("status", .string("injected")), ("session", .integer(String(session.id))), ("hex", .string(HexString.encode(message)))])
        case "disconnect":
            _ = try params.bool("force")  // accepted for Core Lightning parity; lnrr always disconnects
            let (session, _) = try await target(params, needDirection: false)
            session.eventLoop.execute { session.disconnectFromControl() }
            return .object([("status", .string("disconnected")), ("session", .integer(String(session.id)))])
        case "addrule":
            guard let yaml = try params.string("rule") ?? params.string("yaml") else {
                throw RPCFailure(.invalidParams, "addrule needs `rule`: one rule as YAML or JSON text, e.g. {\"name\":\"x\",\"match\":{\"type\":\"ping\"},\"action\":\"drop\"}")
            }
            let (set, diagnostics) = RuleParser.parse(yaml: "rules:\n  - " + yaml.replacingOccurrences(of: "\n", with: "\n    "), file: "addrule")
            guard let rule = set?.rules.first else {
                throw RPCFailure(.invalidParams, diagnostics.map(\.description).joined(separator: "; "))
            }
            if proxy.allRules().rules.contains(where: { $0.name == rule.name }) {
                throw RPCFailure(.ruleExists, "a rule named '\(rule.name)' is in force; delrule it first or give this one another name")
            }
            try proxy.addRule(rule)
            return .object([("added", .string(rule.name)), ("rules", .integer(String(proxy.allRules().rules.count)))])
        case "addfault":
            // A fault is a rule (docs/rules.md, "Faults"): one scoped by direction alone, from the next
            // message that way on every session. Connection faults fire once per session (`count: 1`);
            // `latency` delays every message. With `at: connect` it is an `at: connect` rule: every new
            // connection has it from its first byte (sessions already up are not touched).
            guard let fault = try params.string("fault"), !fault.isEmpty else {
                throw RPCFailure(.invalidParams, "addfault needs `fault`: a fault action as YAML or JSON text, e.g. {\"bandwidth\": 100000} or reset")
            }
            guard let dirText = try params.string("direction"), let direction = Direction(parsing: dirText) else {
                throw RPCFailure(.invalidParams, "addfault needs `direction`: \(Direction.acceptedForms), the way toward the side the fault acts on")
            }
            var atConnect = false
            if let at = try params.string("at") {
                guard at == "connect" else {
                    throw RPCFailure(.invalidParams, "`at` is \"connect\" (the fault acts on every new connection from its first byte, "
                                     + "handshake included); leave it out to act from the next message")
                }
                atConnect = true
            }
            let isLatency = fault.contains("latency")
            let name = try params.string("name") ?? "fault-\(direction == .aToB ? "a2b" : "b2a")-\(proxy.allRules().rules.count + 1)"
            let condition = atConnect ? "at: connect" : isLatency ? "" : ", count: 1"
            let yaml = "name: \"\(name)\"\nmatch: {dir: \(direction == .aToB ? "a2b" : "b2a")\(atConnect ? ", " : "")\(condition)}\naction: \(fault)"
            let (set, diagnostics) = RuleParser.parse(yaml: "rules:\n  - " + yaml.replacingOccurrences(of: "\n", with: "\n    "), file: "addfault")
            guard let rule = set?.rules.first else {
                throw RPCFailure(.invalidParams, diagnostics.map(\.description).joined(separator: "; "))
            }
            guard rule.actions.allSatisfy({ if case .fault = $0 { true } else if case .latency = $0 { true } else { false } }) else {
                throw RPCFailure(.invalidParams, "addfault takes faults only (latency, bandwidth, slicer, reset, slow-close, timeout, limit-data); use addrule for other actions")
            }
            if proxy.allRules().rules.contains(where: { $0.name == rule.name }) {
                throw RPCFailure(.ruleExists, "a rule named '\(rule.name)' is in force; delfault it first or give this one another name")
            }
            try proxy.addRule(rule)
            return .object([("added", .string(rule.name)), ("rules", .integer(String(proxy.allRules().rules.count)))])
        case "delrule", "delfault":
            guard let name = try params.string("name") else { throw RPCFailure(.invalidParams, "delrule needs `name`: a rule added with addrule") }
            guard proxy.extraRules.withLockedValue({ $0.contains { $0.name == name } }) else {
                let fromFile = proxy.allRules().rules.contains { $0.name == name }
                throw RPCFailure(.noSuchRule, fromFile
                    ? "rule '\(name)' comes from the rule file: edit the file and send SIGHUP to change it"
                    : "no rule named '\(name)' was added with addrule" + (Suggestions.nearest(name, in: proxy.extraRules.withLockedValue { $0.map(\.name) }).first.map { " (did you mean '\($0)'?)" } ?? ""))
            }
            try proxy.deleteRule(named: name)
            return .object([("deleted", .string(name))])
        case "listrules":
            let file = proxy.context.currentRules.withLockedValue { $0.file }
            let extra = Set(proxy.extraRules.withLockedValue { $0.map(\.name) })
            return .object([("rules", .array(proxy.allRules().rules.map { rule in
                .object([("name", .string(rule.name)), ("source", .string(extra.contains(rule.name) ? "control" : file ?? "file")),
                         ("action", .string(rule.actions.map(Self.describe).joined(separator: ", ")))]
                        + (rule.match.atConnect ? [("at", .string("connect"))] : []))
            }))])
        default:
            throw RPCFailure(.methodNotFound, "method not found: \(method)")
        }
    }

    /// The session a request names (`session` id, or `node_id` of a or b) and the direction to send.
    private func target(_ params: RPCParams, needDirection: Bool = true) async throws -> (ProxySession, Direction) {
        let sessions = proxy.context.registry.all
        var direction: Direction?
        if let text = try params.string("direction") {
            guard let parsed = Direction(parsing: text) else {
                throw RPCFailure(.invalidParams, "direction '\(text)' is not a direction: give \(Direction.acceptedForms)")
            }
            direction = parsed
        }
        if let id = try params.int("session") {
            guard let session = sessions.first(where: { $0.id == id }) else {
                throw RPCFailure(.noSuchSession, "no session \(id)" + (sessions.isEmpty ? " (there are none; see listsessions)" : "; live sessions are \(sessions.map { String($0.id) }.sorted().joined(separator: ", "))"))
            }
            guard let direction = direction ?? (needDirection ? nil : .aToB) else {
                throw RPCFailure(.invalidParams, "with `session`, give `direction`: a2b (to b) or b2a (to a)")
            }
            return (session, direction)
        }
        let key = params["node_id"] != nil ? "node_id" : "id"
        guard let hex = try params.string(key) else {
            throw RPCFailure(.invalidParams, "give `session` (with `direction`) or `node_id` (the node the message goes to)")
        }
        let node: NodeID
        do { node = try NodeID(hex: hex) } catch {
            throw RPCFailure(.invalidParams, "`\(key)` is malformed: \(error)")
        }
        // Like CLN's sendcustommsg: the message goes *to* node_id, from the other side of its session.
        for session in sessions.reversed() {
            let snapshot = try await session.eventLoop.submit { session.snapshot() }.get()
            if snapshot.nodeB == node { return (session, direction ?? .aToB) }
            if snapshot.nodeA == node { return (session, direction ?? .bToA) }
        }
        throw ControlError.noSuchSession(hex)
    }

    static func hexParam(_ params: RPCParams, _ key: String) throws -> [UInt8] {
        guard let text = try params.string(key) else {
            throw RPCFailure(.invalidParams, "`\(key)` is required: hex of the 2-byte type and payload, without length")
        }
        guard let bytes = HexString.decode(text), bytes.count >= 2 else {
            throw RPCFailure(.invalidParams, "`\(key)` is malformed: hex of at least the 2-byte type, e.g. 8001cafe")
        }
        guard bytes.count <= 65535 else { throw RPCFailure(.invalidParams, "`\(key)` is longer than BOLT 8's 65535 bytes") }
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
        case .latency(let l): return "latency \(l.description)"
        case .fault(let f): return f.description
        }
    }
}

/// The `code` of a JSON-RPC error from the control socket (documented in docs/rules.md). The
/// negative codes are JSON-RPC 2.0's own; the positive ones are lnrr's.
public enum RPCErrorCode: Int, Sendable, CaseIterable {
    /// The request is not valid JSON.
    case parseError = -32700
    /// Valid JSON but not a request: not an object, no `method`, `params` neither object nor array.
    case invalidRequest = -32600
    /// No such method.
    case methodNotFound = -32601
    /// A parameter is missing, malformed or unknown.
    case invalidParams = -32602
    /// lnrr failed in a way the request could not cause.
    case internalError = -32603
    /// No session with that id, or no live session with that node.
    case noSuchSession = 1001
    /// The session exists but cannot carry a message (its upstream is not connected yet, or it is ending).
    case notConnected = 1002
    /// `sendcustommsg` of a type the BOLTs define, without `force`.
    case typeRefused = 1003
    /// `addrule` with the name of a rule in force.
    case ruleExists = 1004
    /// `delrule` of a rule that was not added with `addrule`.
    case noSuchRule = 1005
    /// A bounded resource is full (subscriptions); try again later.
    case busy = 1006
}

/// A JSON-RPC error with its code.
public struct RPCFailure: Error, CustomStringConvertible {
    public var code: Int
    public var message: String

    public init(_ code: RPCErrorCode, _ message: String) {
        self.code = code.rawValue
        self.message = message
    }

    public var description: String { message }

    /// The code and message any error thrown by a method becomes.
    static func from(_ error: Error) -> RPCFailure {
        switch error {
        case let failure as RPCFailure: return failure
        case let control as ControlError:
            switch control {
            case .noSuchSession: return RPCFailure(.noSuchSession, control.description)
            case .notConnected: return RPCFailure(.notConnected, "the session is not connected (its upstream is not up yet, or it is ending)")
            case .refusedType: return RPCFailure(.typeRefused, control.description)
            case .invalid(let why): return RPCFailure(.invalidParams, why)
            }
        default: return RPCFailure(.internalError, "\(error)")
        }
    }
}

/// A request's parameters after `ControlServer.parameters` checked their names; typed accessors
/// report a wrong type as invalid params. A `null` value counts as absent (pyln-client drops
/// `None` arguments, other clients send them as null).
struct RPCParams {
    let method: String
    let pairs: [(String, JSONValue)]

    subscript(key: String) -> JSONValue? {
        guard let value = pairs.first(where: { $0.0 == key })?.1, value != .null else { return nil }
        return value
    }

    func string(_ key: String) throws -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let text) = value else { throw RPCFailure(.invalidParams, "`\(key)` must be a string, not \(value)") }
        return text
    }

    /// A whole number, given as a JSON number or as a string of digits.
    func int(_ key: String) throws -> Int? {
        guard let value = self[key] else { return nil }
        switch value {
        case .integer(let text), .string(let text):
            if let n = Int(text) { return n }
        default: break
        }
        throw RPCFailure(.invalidParams, "`\(key)` must be a whole number, not \(value)")
    }

    /// true/false, as JSON booleans or the strings "true"/"false".
    func bool(_ key: String) throws -> Bool? {
        guard let value = self[key] else { return nil }
        switch value {
        case .bool(let b): return b
        case .string("true"): return true
        case .string("false"): return false
        default: throw RPCFailure(.invalidParams, "`\(key)` must be true or false, not \(value)")
        }
    }
}

/// Applies a Core Lightning reply filter: an object keeps only the keys it names (`true` keeps a
/// value whole, an object or `[filter]` filters inside it); a filter for an array applies to each
/// element.
func applyReplyFilter(_ value: JSONValue, _ filter: JSONValue) -> JSONValue {
    switch (value, filter) {
    case (_, .bool(true)):
        return value
    case (.object(let pairs), .object(let wanted)):
        return .object(pairs.compactMap { key, inner in
            guard let sub = wanted.first(where: { $0.0 == key })?.1, sub != .bool(false) else { return nil }
            return (key, applyReplyFilter(inner, sub))
        })
    case (.array(let items), .array(let wanted)) where wanted.count == 1:
        return .array(items.map { applyReplyFilter($0, wanted[0]) })
    case (.array(let items), .object):
        return .array(items.map { applyReplyFilter($0, filter) })
    default:
        return value
    }
}

/// Splits the byte stream into JSON texts the way lightningd reads its socket: an object (or
/// array) ends at its matching bracket, so a request needs no newline (pyln-client sends none)
/// and newline-separated requests work as well. Anything else is cut at the next newline and
/// answered with a parse error. A request over 1 MiB is an error that closes the connection.
struct JSONTextDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    static let limit = 1 << 20

    /// Scan state of the current text, kept between reads so each byte is looked at once.
    private var scanned = 0
    private var depth = 0
    private var inString = false
    private var escaped = false

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if scanned == 0 {
            // Whitespace between texts (the newline after a request, blank lines) is skipped.
            let view = buffer.readableBytesView
            guard let start = view.firstIndex(where: { !Self.isWhitespace($0) }) else {
                buffer.moveReaderIndex(forwardBy: view.count)
                return .needMoreData
            }
            buffer.moveReaderIndex(to: start)
        }
        let view = buffer.readableBytesView
        guard let first = view.first else { return .needMoreData }
        guard first == UInt8(ascii: "{") || first == UInt8(ascii: "[") else {
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > Self.limit { throw ControlError.invalid("request longer than 1 MiB") }
                return .needMoreData
            }
            let line = buffer.readSlice(length: newline - view.startIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            context.fireChannelRead(wrapInboundOut(line))
            return .continue
        }
        var index = view.startIndex + scanned
        while index < view.endIndex {
            let byte = view[index]
            index += 1
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 {
                    let text = buffer.readSlice(length: index - view.startIndex)!
                    scanned = 0
                    context.fireChannelRead(wrapInboundOut(text))
                    return .continue
                }
            default: break
            }
        }
        scanned = index - view.startIndex
        if scanned > Self.limit { throw ControlError.invalid("request longer than 1 MiB") }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A request cut off by the client's close is not answered: nobody is left to read it.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0a || byte == 0x0d || byte == 0x09
    }
}

/// One client connection: parses requests, answers each as it completes (ids tell the answers
/// apart), streams events after `subscribe`. Every answer and notification is one JSON object
/// followed by a blank line ("\n\n"), as lightningd writes them: pyln-client splits on it, and a
/// line-oriented client sees one object per line and skips the empty ones.
///
/// All state is touched on the channel's event loop only.
final class ControlConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Requests a connection may have running at once; beyond it lnrr stops reading the socket
    /// until one finishes (back-pressure instead of an unbounded queue).
    static let maxInFlight = 16
    /// Subscribers across all connections: each costs a fan-out on every event.
    static let maxSubscribers = 64
    /// `subscribe` with `count` collects at most this many events into its answer.
    static let maxCollected = 10_000

    let server: ControlServer
    private var inFlight = 0
    private var paused = false
    private var channel: Channel?
    /// The streaming subscription of this connection and what it holds back.
    private var subscription: Int?
    /// Events are held until the `subscribe` answer is written, so the answer comes first.
    private var subscribeAnswered = false
    private var heldEvents: [ControlEvent] = []
    /// Events not written because the client did not read fast enough; reported with the next one.
    private var droppedEvents = 0
    /// Collecting subscriptions (`subscribe` with `count`), by their id on the event bus.
    private var collectors: [Int: Collector] = [:]
    /// Core Lightning's `notifications` opt-in: collected events are also sent as they come, as
    /// `message` notifications (what pyln-client's `notify()` hands to its callback).
    private var notificationsEnabled = false

    struct Collector {
        var id: JSONValue
        var filter: JSONValue?
        var count: Int
        var events: [JSONValue] = []
        var timer: Scheduled<Void>?
    }

    init(server: ControlServer) {
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: unwrapInboundIn(data))
        let request: JSONValue
        do { request = try JSONValue.parse(text) } catch {
            answer(id: .null, failure: RPCFailure(.parseError, "parse error: \(error)"))
            return
        }
        guard case .object = request else {
            answer(id: .null, failure: RPCFailure(.invalidRequest, "a request is one JSON object: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"listsessions\"} (batches are not supported)"))
            return
        }
        // A request without `id` is a JSON-RPC notification: it runs, and gets no answer.
        let id = request["id"]
        switch id {
        case nil, .string?, .integer?, .number?, .null?: break
        default:
            answer(id: .null, failure: RPCFailure(.invalidRequest, "`id` must be a string or a number"))
            return
        }
        if let version = request["jsonrpc"], version != .string("2.0") {
            answer(id: id, failure: RPCFailure(.invalidRequest, "`jsonrpc` must be \"2.0\""))
            return
        }
        guard case .string(let method)? = request["method"] else {
            answer(id: id, failure: RPCFailure(.invalidRequest, "invalid request: `method` is required"))
            return
        }
        let filter = request["filter"]
        if let filter, filter != .null, !Self.isObject(filter) {
            answer(id: id, failure: RPCFailure(.invalidParams, "`filter` must be an object, e.g. {\"sessions\":[{\"id\":true}]}"))
            return
        }
        // Methods the --plugins declared are called like built-in ones, their params passed as given.
        if let plugins = server.proxy.context.configuration.messageHook as? PluginHost, plugins.serves(method) {
            let raw = request["params"] ?? .object([])
            run(id: id, filter: filter, context: context) {
                do { return try await plugins.callMethod(method, params: raw) } catch PluginCallError.rpc(let code, let message) {
                    var failure = RPCFailure(.internalError, message)
                    failure.code = code
                    throw failure
                }
            }
            return
        }
        let params: RPCParams
        do { params = try ControlServer.parameters(method, request["params"]) } catch {
            answer(id: id, failure: RPCFailure.from(error))
            return
        }
        switch method {
        case "subscribe": subscribe(id: id, params: params, filter: filter, context: context)
        case "notifications":
            do { notificationsEnabled = try params.bool("enable") ?? true } catch {
                answer(id: id, failure: RPCFailure.from(error))
                return
            }
            answer(id: id, result: .object([]), filter: nil)
        default:
            let server = self.server
            run(id: id, filter: filter, context: context) { try await server.call(method, params) }
        }
    }

    private func run(id: JSONValue?, filter: JSONValue?, context: ChannelHandlerContext, _ work: @escaping @Sendable () async throws -> JSONValue) {
        inFlight += 1
        if inFlight >= Self.maxInFlight, !paused {
            paused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        let promise = context.eventLoop.makePromise(of: JSONValue.self)
        promise.completeWithTask(work)
        promise.futureResult.whenComplete { [self] result in
            switch result {
            case .success(let value): answer(id: id, result: value, filter: filter)
            case .failure(let error): answer(id: id, failure: RPCFailure.from(error))
            }
            inFlight -= 1
            if paused, inFlight < Self.maxInFlight / 2, let channel {
                paused = false
                channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
                channel.read()
            }
        }
    }

    // MARK: subscribe

    private func subscribe(id: JSONValue?, params: RPCParams, filter: JSONValue?, context: ChannelHandlerContext) {
        let count: Int?
        let timeout: Int?
        do {
            count = try params.int("count")
            timeout = try params.int("timeout")
        } catch {
            answer(id: id, failure: RPCFailure.from(error))
            return
        }
        if let count, !(1...Self.maxCollected).contains(count) {
            answer(id: id, failure: RPCFailure(.invalidParams, "`count` must be 1 to \(Self.maxCollected)"))
            return
        }
        if let timeout, timeout <= 0 {
            answer(id: id, failure: RPCFailure(.invalidParams, "`timeout` is in milliseconds and must be positive"))
            return
        }
        if count == nil, subscription != nil {
            answer(id: id, result: .object([("subscribed", .bool(true)), ("subscription", .integer(String(subscription!)))]), filter: filter)
            return
        }
        let bus = server.proxy.context.events
        guard bus.count < Self.maxSubscribers else {
            answer(id: id, failure: RPCFailure(.busy, "\(Self.maxSubscribers) subscriptions are open; close one and try again"))
            return
        }
        let loop = context.eventLoop
        // Events are published on the sessions' event loops: hop onto this connection's.
        let box = NIOLockedValueBox(0)
        let token = bus.subscribe { [weak self] event in
            let token = box.withLockedValue { $0 }
            loop.execute { self?.deliver(event, to: token) }
        }
        box.withLockedValue { $0 = token }
        guard let count else {
            subscription = token
            subscribeAnswered = false
            answer(id: id, result: .object([("subscribed", .bool(true)), ("subscription", .integer(String(token)))]), filter: filter)
            subscribeAnswered = true
            for event in heldEvents { writeEvent(event) }
            heldEvents.removeAll()
            return
        }
        // With `count`: the answer is the next `count` events (for one-call clients like pyln-client).
        var collector = Collector(id: id ?? .null, filter: filter, count: count)
        if let timeout {
            collector.timer = loop.scheduleTask(in: .milliseconds(Int64(timeout))) { [weak self] in
                self?.finishCollecting(token, complete: false)
            }
        }
        collectors[token] = collector
    }

    private func deliver(_ event: ControlEvent, to token: Int) {
        if token == subscription {
            if subscribeAnswered {
                writeEvent(event)
            } else if heldEvents.count < 1024 {
                heldEvents.append(event)
            } else {
                droppedEvents += 1
            }
        } else if collectors[token] != nil {
            if notificationsEnabled {
                // Core Lightning's progress notification: the event's JSON text as `message`.
                send(.object([("jsonrpc", .string("2.0")), ("method", .string("message")),
                              ("params", .object([("id", collectors[token]!.id), ("level", .string("info")), ("message", .string(event))]))]))
            }
            collectors[token]!.events.append((try? JSONValue.parse(event)) ?? .string(event))
            if collectors[token]!.events.count >= collectors[token]!.count { finishCollecting(token, complete: true) }
        }
    }

    private func finishCollecting(_ token: Int, complete: Bool) {
        guard let collector = collectors.removeValue(forKey: token) else { return }
        collector.timer?.cancel()
        server.proxy.context.events.unsubscribe(token)
        answer(id: collector.id, result: .object([("events", .array(collector.events)), ("complete", .bool(complete))]), filter: collector.filter)
    }

    /// Writes one event notification; a client that does not read loses events (counted and
    /// reported in the next one) rather than making lnrr buffer without bound.
    private func writeEvent(_ event: ControlEvent) {
        guard let channel else { return }
        guard channel.isWritable else {
            droppedEvents += 1
            return
        }
        var text = ""
        if droppedEvents > 0 {
            let dropped = JSONValue.object([("event", .string("dropped")), ("count", .int(droppedEvents)),
                                            ("why", .string("the subscriber did not read fast enough"))])
            text += "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":\(dropped)}\n\n"
            droppedEvents = 0
        }
        // `event` is JSONValue text formatted once for every subscriber; only the fixed envelope is spliced here.
        text += "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":\(event)}\n\n"
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.writeAndFlush(buffer, promise: nil)
    }

    // MARK: Answers

    private func answer(id: JSONValue?, result: JSONValue, filter: JSONValue?) {
        guard let id else { return }
        let filtered = filter.map { $0 == .null ? result : applyReplyFilter(result, $0) } ?? result
        send(.object([("jsonrpc", .string("2.0")), ("id", id), ("result", filtered)]))
    }

    private func answer(id: JSONValue?, failure: RPCFailure) {
        guard let id else { return }
        send(.object([("jsonrpc", .string("2.0")), ("id", id),
                      ("error", .object([("code", .integer(String(failure.code))), ("message", .string(failure.message))]))]))
    }

    private func send(_ value: JSONValue) {
        guard let channel else { return }
        var text = value.description
        text += "\n\n"
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.writeAndFlush(buffer, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // The decoder's limit: answer once, then close (the stream cannot be resynchronised).
        // Socket errors (the client went away) just close.
        if error is ControlError { answer(id: .null, failure: RPCFailure(.invalidRequest, "\(error)")) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let bus = server.proxy.context.events
        if let subscription { bus.unsubscribe(subscription) }
        for (token, collector) in collectors {
            collector.timer?.cancel()
            bus.unsubscribe(token)
        }
        collectors.removeAll()
        context.fireChannelInactive()
    }

    private static func isObject(_ value: JSONValue) -> Bool {
        if case .object = value { return true }
        return false
    }
}

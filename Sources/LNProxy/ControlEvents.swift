import LNRelay
import LNWire
import NIOCore
import NIOConcurrencyHelpers

/// Errors the control socket reports to its clients.
public enum ControlError: Error, CustomStringConvertible {
    case noSuchSession(String)
    case notConnected
    case refusedType(UInt16)
    case invalid(String)

    public var description: String {
        switch self {
        case .noSuchSession(let what): return "No such peer: \(what)"
        case .notConnected: return "Peer is not connected"
        case .refusedType(let type): return "Cannot send messages of type \(type) (WIRE_\(MessageCatalogue.displayName(of: type).uppercased())): it is a BOLT message; pass force to send it anyway"
        case .invalid(let why): return why
        }
    }
}

/// A live event for `subscribe` clients: a JSON object as text.
public typealias ControlEvent = String

/// Fan-out of session events to control-socket subscribers. Sessions on every event loop ask
/// `active` before formatting an event, and subscribe/unsubscribe change it from the control
/// socket's threads: every access goes through one lock (uncontended and only for the messages
/// that may interest a subscriber: custom messages, rule actions, phase changes).
final class EventBus: Sendable {
    private let subscribers = NIOLockedValueBox<[Int: @Sendable (ControlEvent) -> Void]>([:])
    private let nextID = NIOLockedValueBox(0)

    /// How many subscribers there are.
    var count: Int { subscribers.withLockedValue { $0.count } }

    /// Whether anyone listens (read under the lock: it was a plain Bool raced from every loop).
    var active: Bool { subscribers.withLockedValue { !$0.isEmpty } }

    func subscribe(_ deliver: @escaping @Sendable (ControlEvent) -> Void) -> Int {
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        subscribers.withLockedValue { $0[id] = deliver }
        return id
    }

    func unsubscribe(_ id: Int) {
        subscribers.withLockedValue { $0[id] = nil }
    }

    func publish(_ event: @autoclosure () -> ControlEvent) {
        let targets = subscribers.withLockedValue { Array($0.values) }
        guard !targets.isEmpty else { return }
        let text = event()
        for deliver in targets { deliver(text) }
    }
}

extension ProxySession {
    /// Formats a core notice for `subscribe` clients (called only while someone listens).
    func publish(_ notice: SessionNotice<ByteBuffer>) {
        let bus = context.events
        let sessionID = id
        switch notice {
        case .sessionStart(let nodeA, let nodeB, let transparent):
            bus.publish(JSONValue.object([("event", .string("session-start")), ("session", .int(sessionID)), ("node_a", .string(nodeA)),
                                          ("node_b", .string(nodeB)), ("transparent", .bool(transparent))]).description)
        case .sessionEnd(let reason):
            bus.publish(JSONValue.object([("event", .string("session-end")), ("session", .int(sessionID)), ("reason", .string(reason.kind.rawValue)),
                                          ("detail", .string(reason.detail))]).description)
        case .phase(let change):
            bus.publish(JSONValue.object([("event", .string("phase")), ("session", .int(sessionID)), ("change", .string(change))]).description)
        case .rule(let direction, let type, let note):
            bus.publish(JSONValue.object([("event", .string("rule")), ("session", .int(sessionID)), ("direction", .string(direction.rawValue)),
                                          ("type", .int(Int(type))), ("action", .string(note))]).description)
        case .message(let message, let direction, let action):
            guard let type = message.messageType, type >= 32768 || action != nil else { return }
            var pairs: [(String, JSONValue)] = [
                ("event", .string(type >= 32768 ? "custommsg" : "message")), ("session", .int(sessionID)),
                ("direction", .string(direction.rawValue)), ("type", .int(Int(type))),
                ("name", .string(MessageCatalogue.displayName(of: type))), ("hex", .string(HexString.encode(message.bytes))),
            ]
            if let action { pairs.append(("action", .string(action))) }
            bus.publish(JSONValue.object(pairs).description)
        }
    }
}

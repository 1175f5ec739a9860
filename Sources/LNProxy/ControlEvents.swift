import LNWire
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

/// Fan-out of session events to control-socket subscribers. Publishing costs one atomic-ish check
/// when nobody listens, so sessions can call it on every message.
final class EventBus: @unchecked Sendable {
    private let subscribers = NIOLockedValueBox<[Int: (ControlEvent) -> Void]>([:])
    private let nextID = NIOLockedValueBox(0)
    private(set) var active = false

    /// How many subscribers there are.
    var count: Int { subscribers.withLockedValue { $0.count } }

    func subscribe(_ deliver: @escaping (ControlEvent) -> Void) -> Int {
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        subscribers.withLockedValue { $0[id] = deliver }
        active = true
        return id
    }

    func unsubscribe(_ id: Int) {
        let empty = subscribers.withLockedValue { $0[id] = nil; return $0.isEmpty }
        if empty { active = false }
    }

    func publish(_ event: @autoclosure () -> ControlEvent) {
        guard active else { return }
        let text = event()
        for deliver in subscribers.withLockedValue({ Array($0.values) }) { deliver(text) }
    }
}

extension ProxySession {
    /// Publishes custom messages, rule actions and phase changes for `subscribe` clients.
    func publishMessage(_ message: [UInt8], _ direction: Direction, action: String?, phaseChanges: [String] = [], annotations: [String] = []) {
        let bus = context.events
        guard bus.active, message.count >= 2 else { return }
        let type = UInt16(message[0]) << 8 | UInt16(message[1])
        let sessionID = id
        if type >= 32768 || action != nil {
            var json = "{\"event\":\"\(type >= 32768 ? "custommsg" : "message")\",\"session\":\(sessionID),\"direction\":\"\(direction.rawValue)\",\"type\":\(type),\"name\":\"\(MessageCatalogue.displayName(of: type))\",\"hex\":\"\(HexString.encode(message))\""
            if let action { json += ",\"action\":\"\(action)\"" }
            json += "}"
            bus.publish(json)
        }
        for change in phaseChanges {
            bus.publish("{\"event\":\"phase\",\"session\":\(sessionID),\"change\":\"\(change)\"}")
        }
        for note in annotations {
            bus.publish("{\"event\":\"rule\",\"session\":\(sessionID),\"direction\":\"\(direction.rawValue)\",\"type\":\(type),\"action\":\(jsonQuoted(note))}")
        }
    }
}

func jsonQuoted(_ s: String) -> String {
    var out = ""
    JSONValue.writeString(s, into: &out)
    return out
}

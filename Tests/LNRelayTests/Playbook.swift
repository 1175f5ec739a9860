import LNRecording
import LNRelay
import LNRules
import LNWire
import Testing

/// Drives a `SessionCore` without sockets, in the manner of mitmproxy's `Playbook`: feed it an event
/// (`playbook >> event`) and read back what it asked for, as one short line per action. The lines
/// are the transcript the tests compare against.
final class Playbook {
    typealias Core = SessionCore<[UInt8]>

    var core: Core
    /// Monotonic time, nanoseconds; tests move it with `advance`.
    private(set) var now: UInt64 = 1_000_000_000
    /// Kinds of actions left out of transcripts (`log`, `publish`, ...); tests can show them.
    var hidden: Set<String>

    static let nodeA = String(repeating: "02", count: 33)
    static let nodeB = String(repeating: "03", count: 33)
    static let wallStart: UInt64 = 1_700_000_000_000_000_000

    init(rules: String? = nil, records: Bool = false, hook: Bool = false, requireTransparent: Bool = false,
         holdLimit: Int = 256 * 1024, recordFailedHandshakes: Bool = false,
         hidden: Set<String> = ["log", "publish", "kick", "cancel", "reading"]) {
        var set: RuleSet?
        if let rules {
            let (parsed, diagnostics) = RuleParser.parse(yaml: rules, file: "test.yaml")
            #expect(parsed != nil, "rules do not parse: \(diagnostics)")
            set = parsed
        }
        let settings = SessionSettings(
            id: 1, nodeB: Self.nodeB, listen: "127.0.0.1:9735", upstream: "\(Self.nodeB)@127.0.0.1:9736", lnrrVersion: "test",
            syncMode: .message, records: records, requireTransparent: requireTransparent, handshakeTimeoutNanos: 30_000_000_000,
            customMessageHook: hook, holdLimit: holdLimit, startedWallNanos: Self.wallStart,
            recordFailedHandshakes: recordFailedHandshakes)
        core = Core(settings: settings, rules: set, rulesFile: rules == nil ? nil : "test.yaml", rulesSHA256: nil, now: now)
        self.hidden = hidden
    }

    /// A playbook whose session is already relaying (both handshakes done), its transcript so far dropped.
    static func relaying(rules: String? = nil, records: Bool = false, hook: Bool = false, holdLimit: Int = 256 * 1024,
                         hidden: Set<String> = ["log", "publish", "kick", "cancel", "reading"]) -> Playbook {
        let p = Playbook(rules: rules, records: records, hook: hook, holdLimit: holdLimit, hidden: hidden)
        _ = p >> .attached(.a, remoteAddress: "127.0.0.1:5000")
        _ = p >> .handshakeCompleted(.a, remoteNodeID: nodeA, keyHeld: true)
        _ = p >> .attached(.b, remoteAddress: "127.0.0.1:9736")
        _ = p >> .handshakeCompleted(.b, remoteNodeID: nodeB, keyHeld: false)
        #expect(p.core.lifecycle == .relaying)
        return p
    }

    func advance(milliseconds: UInt64) { now += milliseconds * 1_000_000 }

    /// Feeds one event; returns the transcript of the actions it caused.
    static func >> (playbook: Playbook, event: SessionEvent<[UInt8]>) -> [String] {
        var actions: [SessionAction<[UInt8]>] = []
        playbook.core.handle(event, now: playbook.now, into: &actions)
        var received: [UInt8]?
        if case .received(let message, _) = event { received = message }
        return actions.compactMap { playbook.line($0, received: received) }
    }

    private func line(_ action: SessionAction<[UInt8]>, received: [UInt8]?) -> String? {
        let (kind, text): (String, String)
        switch action {
        // The received message, delivered or recorded as it came, reads like any other.
        case .deliverReceived(let side): (kind, text) = ("deliver", "deliver \(side) \(HexString.encode(received ?? []))")
        case .recordReceived(let direction, _, let comments):
            (kind, text) = ("record", "record \(direction.rawValue) \(HexString.encode(received ?? []))" + (comments.isEmpty ? "" : " [\(comments.joined(separator: " | "))]"))
        case .dialUpstream(let transparent): (kind, text) = ("dial", transparent ? "dial as a" : "dial as proxy")
        case .deliver(let m, let side): (kind, text) = ("deliver", "deliver \(side) \(HexString.encode(m))")
        case .flush(let side): (kind, text) = ("flush", "flush \(side)")
        case .setReading(let side, let on): (kind, text) = ("reading", "read \(side) \(on ? "on" : "off")")
        case .openRecording: (kind, text) = ("open", "open recording")
        case .recordMessage(let m, let direction, _, let comments, _):
            (kind, text) = ("record", "record \(direction.rawValue) \(HexString.encode(m))" + (comments.isEmpty ? "" : " [\(comments.joined(separator: " | "))]"))
        case .recordEvent(let event, _):
            let fields = event.fields.keys.sorted().map { key -> String in
                switch event.fields[key]! {
                case .string(let s): "\(key)=\(s)"
                case .int(let i): "\(key)=\(i)"
                case .bool(let b): "\(key)=\(b)"
                }
            }
            (kind, text) = ("event", (["event \(event.name)"] + fields).joined(separator: " "))
        case .kickRecorder: (kind, text) = ("kick", "kick")
        case .publish(let notice):
            switch notice {
            case .message(let m, let d, let action): (kind, text) = ("publish", "publish \(d.rawValue) \(HexString.encode(m)) \(action ?? "")")
            case .phase(let change): (kind, text) = ("publish", "publish phase \(change)")
            case .rule(_, _, let note): (kind, text) = ("publish", "publish \(note)")
            case .sessionStart: (kind, text) = ("publish", "publish session-start")
            case .sessionEnd(let r): (kind, text) = ("publish", "publish session-end \(r.kind.rawValue)")
            }
        case .runHook(_, let direction, let m): (kind, text) = ("hook", "hook \(direction.rawValue) \(HexString.encode(m))")
        case .wake(let timer, let at):
            let name = switch timer {
            case .handshake: "handshake"
            case .release(let d): "release \(d.rawValue)"
            case .faultTimeout: "fault-timeout"
            case .slowClose: "slow-close"
            }
            (kind, text) = ("wake", "wake \(name) +\((Int64(bitPattern: at) - Int64(bitPattern: now)) / 1_000_000)ms")
        case .cancelWake(let timer): (kind, text) = ("cancel", "cancel \(timer)")
        case .close(let side): (kind, text) = ("close", "close \(side)")
        case .reset(let side): (kind, text) = ("close", "reset \(side)")
        case .shape(let side, let shaping): (kind, text) = ("shape", "shape \(side) \(shaping.description)")
        case .limitBytes(let side, let bytes): (kind, text) = ("shape", "limit \(side) \(bytes) B")
        case .log(let level, let message): (kind, text) = ("log", "log \(level) \(message)")
        case .finished(let reason): (kind, text) = ("finished", "finished \(reason.kind.rawValue)")
        }
        return hidden.contains(kind) ? nil : text
    }
}

enum Msg {
    static let ping: [UInt8] = [0x00, 0x12, 0x00, 0x02, 0x00, 0x00]
    static let pong: [UInt8] = [0x00, 0x13, 0x00, 0x00]
    static let custom: [UInt8] = [0x80, 0x01, 0xca, 0xfe]
    static let custom2: [UInt8] = [0x80, 0x03, 0xbe, 0xef]
    static let initMessage: [UInt8] = [0x00, 0x10, 0x00, 0x00, 0x00, 0x00]
}

extension Array where Element == UInt8 {
    var hex: String { HexString.encode(self) }
}

/// The names of the session events a recording holds (the `event` key of each events-interface
/// packet, docs/recording-format.md). The proxy writes them and `show`, `list` and replay read
/// them through this one type, beside `DeliveryNote`.
public enum SessionEventKind: String, Sendable, CaseIterable {
    /// The session began: `a_address`.
    case sessionStart = "session-start"
    /// A side's BOLT 8 handshake completed: `side`, `node_id`, `transparent` (a only).
    case handshake
    /// A custom-message hook answered: `direction`, `message`, `result`, `payload`.
    case hook
    /// A `blackhole` or `stall` rule wedged the connection: `kind`.
    case ruleHalt = "rule-halt"
    /// Reading paused or resumed because the recording fell behind: `on`, `cause`.
    case backpressure
    /// The rules were replaced while the session ran: `rules`, `file`, `sha256`.
    case rulesReloaded = "rules-reloaded"
    /// The session ended: `reason`, `by`, `detail`.
    case close
    /// A rule's network fault took effect: `fault` (its name), `direction`, `detail`.
    case fault
}

extension RecordingEvent {
    /// An event of a known kind.
    public init(_ kind: SessionEventKind, fields: [String: RecordingEventValue] = [:]) {
        self.init(name: kind.rawValue, fields: fields)
    }

    /// The event's kind; nil for a name this version does not know (newer writers may add some).
    public var kind: SessionEventKind? { SessionEventKind(rawValue: name) }
}

import LNWire

/// One end of a session: **a** dialed the proxy, **b** is the upstream the proxy dialed. Replay
/// uses the same type for the recorded side lnrr plays (`--as a|b`); the live node takes ``other``.
public enum Side: String, Sendable, Hashable, Codable, CaseIterable {
    case a, b

    /// The other end (in a replay: the side the live node takes).
    public var other: Side { self == .a ? .b : .a }

    /// The direction of messages this side sends (in a replay: what lnrr sends).
    public var sending: Direction { self == .a ? .aToB : .bToA }

    /// The direction of messages this side receives (in a replay: what the live node sends).
    public var receiving: Direction { sending.reversed }
}

/// Why a session ended, as recorded in its `close` event.
public struct CloseReason: Sendable, Equatable, CustomStringConvertible {
    /// What kind of ending; the raw values are the `reason` strings in recordings.
    public enum Kind: String, Sendable {
        /// The side closed its connection (TCP EOF).
        case eof
        /// The BOLT 8 handshake failed (bad version, bad key, bad MAC in an act, wrong node id).
        case handshakeFailure = "handshake-failure"
        /// A frame failed authentication after the handshake.
        case macFailure = "mac-failure"
        /// The stream ended in the middle of a frame.
        case truncated
        /// The upstream could not be reached.
        case upstreamUnreachable = "upstream-unreachable"
        /// lnrr refused the session (e.g. `--require-transparent` without a's key).
        case refused
        /// A rule or a control command cut the connection.
        case disconnected
        /// lnrr is shutting down.
        case shutdown
        /// Any other I/O or protocol error.
        case error
    }

    /// The side whose connection caused the end, when one did.
    public var side: Side?
    public var kind: Kind
    /// Human-readable detail (error text).
    public var detail: String

    public init(side: Side?, kind: Kind, detail: String = "") {
        self.side = side
        self.kind = kind
        self.detail = detail
    }

    public var description: String {
        var text = kind.rawValue
        if let side { text += " (\(side))" }
        if !detail.isEmpty { text += ": \(detail)" }
        return text
    }
}

/// What a custom-message hook decided about one message.
public enum HookVerdict: Sendable, Equatable {
    case `continue`
    case drop
    case replace([UInt8])
}

/// A hook's whole answer about one message: the verdict, messages to send around it, and why the
/// hook's own answer was not used when it was not (then the verdict is the default, `continue`).
public struct HookAnswer: Sendable, Equatable {
    public var verdict: HookVerdict
    /// Sent the same way just before / just after the message (recorded as injected).
    public var injectBefore: [[UInt8]]
    public var injectAfter: [[UInt8]]
    public var problem: String?
    /// Who decided (a plugin's name, the hook command), for the recording.
    public var by: String?

    public init(_ verdict: HookVerdict, injectBefore: [[UInt8]] = [], injectAfter: [[UInt8]] = [], problem: String? = nil, by: String? = nil) {
        self.verdict = verdict
        self.injectBefore = injectBefore
        self.injectAfter = injectAfter
        self.problem = problem
        self.by = by
    }
}

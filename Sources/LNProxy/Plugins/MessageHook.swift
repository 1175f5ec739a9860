import LNWire

/// One message a session asks its hook about.
public struct HookQuery: Sendable {
    /// The session's process-unique number.
    public var session: Int
    public var direction: Direction
    /// The sending node's id (hex), when known: Core Lightning's `peer_id` as seen by the receiver.
    public var peerID: String?
    /// The connection's phase before this message (docs/phases.md).
    public var phase: String
    /// The whole message: 2-byte type and payload.
    public var message: [UInt8]

    public init(session: Int, direction: Direction, peerID: String?, phase: String, message: [UInt8]) {
        self.session = session
        self.direction = direction
        self.peerID = peerID
        self.phase = phase
        self.message = message
    }

    /// The message type, 0 for a message too short to have one.
    public var type: UInt16 { WireMessage.type(message) ?? 0 }
}

/// What a hook decided about one message.
public struct HookOutcome: Sendable, Equatable {
    public enum Result: Sendable, Equatable {
        /// Deliver the message as it is.
        case `continue`
        /// Deliver nothing in its place.
        case drop
        /// Deliver these bytes (type and payload) instead.
        case replace([UInt8])
    }

    public var result: Result
    /// Messages sent the same way just before / just after the subject (recorded as injected).
    public var injectBefore: [[UInt8]]
    public var injectAfter: [[UInt8]]
    /// Why the hook's own answer was not used and the default verdict (continue) was taken instead:
    /// a timeout, an answer that does not parse, a plugin that exited. `nil` when the hook answered.
    public var problem: String?
    /// Who decided (for recordings and logs): the plugin's name, or the hook command.
    public var decidedBy: String?

    public init(_ result: Result, injectBefore: [[UInt8]] = [], injectAfter: [[UInt8]] = [], problem: String? = nil, decidedBy: String? = nil) {
        self.result = result
        self.injectBefore = injectBefore
        self.injectAfter = injectAfter
        self.problem = problem
        self.decidedBy = decidedBy
    }

    /// The documented default verdict when a hook cannot answer: the message continues.
    public static func defaultVerdict(_ problem: String, by: String? = nil) -> HookOutcome {
        HookOutcome(.continue, problem: problem, decidedBy: by)
    }
}

/// The one point where a session consults something outside it about a message: the
/// `--custommsg-hook` command (`OneShotHook`) or the plugins (`PluginHost`). The session does not
/// know which it talks to.
///
/// Contract: answers for one session and direction are given in the order the questions were asked,
/// so a session may ask about the next message before the previous one is answered (pipelining) and
/// still release messages in order by taking each answer for the oldest question it has open.
public protocol MessageHook: AnyObject, Sendable {
    /// Whether messages of `type` are asked about at all. Called for every relayed message on the
    /// session's event loop: it must be cheap and must not block.
    func consults(type: UInt16) -> Bool
    /// Asks about one message; `answer` is called exactly once, on any thread.
    func ask(_ query: HookQuery, answer: @escaping @Sendable (HookOutcome) -> Void)
}

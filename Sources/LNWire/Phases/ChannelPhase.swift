/// Where a channel (or a connection) is in its life, named after the Core Lightning sub-daemon that
/// would own the peer at that point.
///
/// The phases exist so that rules and replays can aim at hand-over points between owners: a message
/// that arrives just as one daemon gives the peer to the next is where implementations break. The
/// raw values are the names used in rule files and recordings.
///
/// Phases are ordered by a channel's life (`initializing < idle < opening < channel < closing < closed`).
/// See docs/phases.md for every transition.
public enum ChannelPhase: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// Before both `init` messages were seen; a connection-level phase only (`connectd`).
    case initializing = "init"
    /// A connection-level phase only: `init` is done and every channel the connection had is closed
    /// (a cooperative close or an `error` ended it); the peer is back with `connectd`/`lightningd`
    /// until a new channel opens. Before any channel appears the connection reads `opening`.
    case idle
    /// No channel yet, or channel establishment (v1 or interactive v2) in progress (`openingd`).
    case opening
    /// Normal operation: from `channel_ready` or `channel_reestablish` until the shutdown is
    /// cleared; includes splicing (`channeld`).
    case channel
    /// Mutual-close fee negotiation (`closingd`).
    case closing
    /// The channel is finished as far as the peer protocol is concerned (`onchaind`, no peer).
    case closed

    /// The Core Lightning sub-daemon that owns the peer in this phase, for explanations.
    public var coreLightningDaemon: String {
        switch self {
        case .initializing: "connectd"
        case .idle: "lightningd"
        case .opening: "openingd"
        case .channel: "channeld"
        case .closing: "closingd"
        case .closed: "onchaind"
        }
    }

    private var order: UInt8 {
        switch self {
        case .initializing: 0
        case .idle: 1
        case .opening: 2
        case .channel: 3
        case .closing: 4
        case .closed: 5
        }
    }

    public static func < (lhs: ChannelPhase, rhs: ChannelPhase) -> Bool { lhs.order < rhs.order }
}

extension ChannelPhase: CustomStringConvertible {
    /// The raw value (`init`, `opening`, ...), as written in rule files.
    public var description: String { rawValue }
}

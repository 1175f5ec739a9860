/// What the phase tracker knows about one channel on a connection.
public struct ChannelState: Sendable {
    /// The channel's identity: the final `channel_id` once known, the `temporary_channel_id` before.
    public internal(set) var id: ChannelID
    /// The `temporary_channel_id` the channel was opened under, once it has been renamed to `id`.
    public internal(set) var temporaryID: ChannelID?
    /// Where the channel is now.
    public internal(set) var phase: ChannelPhase

    /// Which sides have sent `shutdown` (bit 0: a->b, bit 1: b->a).
    var shutdownMask: UInt8 = 0
    /// Live HTLCs as counted from `update_add_htlc` minus removals; saturates at zero, so HTLCs
    /// added before this connection are invisible (see docs/phases.md).
    var liveHTLCs: UInt32 = 0
    /// For updates sent by each side, how far their commitment dance has come.
    var updates = PerDirection(UpdateStage.settled)
    /// Whether `closing_signed`, `closing_complete` or `closing_sig` has been seen, i.e. whether
    /// `closing` was observed rather than inferred from the shutdown exchange.
    var negotiationSeen = false
    /// The last legacy `closing_signed` fee each side proposed.
    var lastClosingFee = PerDirection<UInt64?>(nil)
    /// Sides whose `closing_complete` awaits the peer's `closing_sig` (bit per direction).
    var awaitingClosingSig: UInt8 = 0
    /// Whether any `tx_signatures` was seen while opening: after that, `tx_abort` no longer
    /// abandons the channel.
    var txSignaturesSeen = false
    /// How the channel got to `closed`, which decides whether a later `closing_complete` may
    /// reopen the negotiation.
    var closedBy: CloseCause = .notClosed
    /// The initiator's `revocation_basepoint` from `open_channel2`, kept until `accept_channel2`
    /// makes the v2 `channel_id` computable.
    var v2InitiatorRevocationBasepoint: [UInt8]?

    init(id: ChannelID, phase: ChannelPhase) {
        self.id = id
        self.phase = phase
    }

    /// Whether some update has not yet been committed and revoked on both sides, as far as the
    /// tracker's approximation can tell.
    public var hasPendingUpdates: Bool {
        liveHTLCs != 0 || updates.a != .settled || updates.b != .settled
    }

    /// Whether `direction`'s sender has sent `shutdown` on this channel.
    public func hasSentShutdown(_ direction: Direction) -> Bool {
        shutdownMask & direction.phaseBit != 0
    }
}

/// How far the updates one side sent have come through BOLT 2's commitment exchange: the sender
/// signs (`commitment_signed`), the peer revokes (`revoke_and_ack`) and signs back, the sender
/// revokes. Only then are they irrevocably on both commitments.
enum UpdateStage: UInt8, Sendable {
    case settled
    case awaitingSenderCommitment
    case awaitingPeerRevocation
    case awaitingPeerCommitment
    case awaitingSenderRevocation
}

enum CloseCause: UInt8, Sendable {
    case notClosed
    case negotiated
    case error
    case aborted
}

/// A value for each direction, without the allocation a dictionary or array would cost.
struct PerDirection<Value: Sendable>: Sendable {
    var a: Value
    var b: Value

    init(_ value: Value) {
        a = value
        b = value
    }

    subscript(_ direction: Direction) -> Value {
        get { direction == .aToB ? a : b }
        set {
            if direction == .aToB { a = newValue } else { b = newValue }
        }
    }
}

extension Direction {
    /// One bit per direction, for the tracker's small masks.
    var phaseBit: UInt8 { self == .aToB ? 1 : 2 }
}

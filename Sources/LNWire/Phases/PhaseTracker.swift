import CSodium

/// Follows the protocol phase of every channel on one connection, from the raw messages relayed in
/// both directions.
///
/// The tracker reads only the few fields it needs (type, `channel_id`, a fee, a funding outpoint,
/// revocation basepoints) straight from their BOLT 2 offsets, so it can run on every message in the
/// proxy's hot path: messages that change nothing (gossip, custom messages, pings, updates on a
/// channel in `channel`) cost a type switch and at most a scan of the connection's channels, and
/// allocate nothing. Messages too short for their type are not used for tracking; nothing here
/// crashes on malformed input.
///
/// Create one per connection; a new connection starts a new tracker (channels come back through
/// `channel_reestablish`). The state machine is documented in docs/phases.md.
///
/// ```swift
/// var tracker = PhaseTracker()
/// let seen = tracker.observe(messageBytes, direction: .aToB)
/// for change in seen.changes { log(change.description) }   // "6a0e..12bd: opening -> channel"
/// if seen.phase == .closing { ... }
/// ```
public struct PhaseTracker: Sendable {
    /// The phase of the connection as a whole: `init` until both `init` messages were seen, then
    /// the furthest phase among its channels that are not closed (`opening` when it has had none,
    /// `idle` when every channel it had is closed).
    ///
    /// Messages that belong to no channel (`init`, `ping`, gossip, custom messages, `warning` and
    /// `error` with a zero `channel_id`) carry this phase: it names the daemon that would have
    /// received them.
    public private(set) var connectionPhase: ChannelPhase = .initializing

    /// The channels seen on this connection, in the order they first appeared, including closed
    /// ones (up to ``maximumTrackedChannels``).
    public private(set) var channels: [ChannelState] = []

    /// Bit per direction that sent `init`.
    private var initMask: UInt8 = 0

    /// A peer inventing `channel_id`s must not grow the tracker without bound: past this many
    /// channels a closed one is forgotten to make room, and if none is closed the new channel is
    /// not tracked.
    public static let maximumTrackedChannels = 256

    /// A tracker for a new connection: in `init`, with no channels.
    public init() {}

    /// The state of the channel known by `id` (its final or its temporary id), if tracked.
    public func channel(_ id: ChannelID) -> ChannelState? {
        index(of: id).map { channels[$0] }
    }

    // MARK: - Observing

    /// Observes one message (2-byte big-endian type followed by the payload, without the BOLT 8
    /// length) travelling in `direction`, and reports what it belonged to and what it changed.
    public mutating func observe(_ message: UnsafeRawBufferPointer, direction: Direction) -> PhaseObservation {
        guard message.count >= 2 else { return connectionLevel() }
        let type = PhaseWire.u16(message, at: 0)
        guard let kind = PhaseMessageKind(type: type) else { return connectionLevel() }
        switch kind {
        case .initMessage:
            return observeInit(direction)
        case .error, .warning:
            guard message.count >= idEnd else { return connectionLevel() }
            let id = ChannelID(message, at: 2)
            return kind == .error ? observeError(id) : attribute(id)
        default:
            guard message.count >= kind.minimumLength else { return connectionLevel() }
            return observeChannelMessage(kind, message, direction)
        }
    }

    /// Observes one message given as bytes (type followed by payload), like the
    /// `UnsafeRawBufferPointer` overload; contiguous collections such as `[UInt8]` are not copied.
    public mutating func observe(_ message: some Collection<UInt8>, direction: Direction) -> PhaseObservation {
        if let seen = message.withContiguousStorageIfAvailable({ observe(UnsafeRawBufferPointer($0), direction: direction) }) {
            return seen
        }
        return Array(message).withUnsafeBytes { observe($0, direction: direction) }
    }

    // MARK: - Connection-level messages

    private func connectionLevel() -> PhaseObservation {
        PhaseObservation(channel: nil, before: connectionPhase, after: connectionPhase, changes: [])
    }

    private mutating func observeInit(_ direction: Direction) -> PhaseObservation {
        let before = connectionPhase
        initMask |= direction.phaseBit
        let after = refreshConnectionPhase()
        guard after != before else { return connectionLevel() }
        return PhaseObservation(
            channel: nil, before: before, after: after,
            changes: [PhaseChange(channel: nil, from: before, to: after)]
        )
    }

    /// `error` fails the channel it names, or every channel when the id is zero (BOLT 1).
    private mutating func observeError(_ id: ChannelID) -> PhaseObservation {
        let connectionBefore = connectionPhase
        var changes: [PhaseChange] = []
        if id.isZero {
            for i in channels.indices where channels[i].phase != .closed {
                let from = channels[i].phase
                channels[i].phase = .closed
                channels[i].closedBy = .error
                changes.append(PhaseChange(channel: channels[i].id, from: from, to: .closed))
            }
            let after = refreshConnectionPhase()
            if after != connectionBefore {
                changes.append(PhaseChange(channel: nil, from: connectionBefore, to: after))
            }
            return PhaseObservation(channel: nil, before: connectionBefore, after: after, changes: changes)
        }
        guard let i = index(of: id) else { return attribute(id) }
        let from = channels[i].phase
        if from != .closed {
            channels[i].phase = .closed
            channels[i].closedBy = .error
        }
        return finish(i, from: from, connectionBefore: connectionBefore, isNew: false, renamedFrom: nil)
    }

    /// A message that names a channel but changes nothing (`warning`, `error` for an unknown id).
    private func attribute(_ id: ChannelID) -> PhaseObservation {
        guard !id.isZero else { return connectionLevel() }
        if let i = index(of: id) {
            let phase = channels[i].phase
            return PhaseObservation(channel: channels[i].id, before: phase, after: phase, changes: [])
        }
        return PhaseObservation(channel: id, before: connectionPhase, after: connectionPhase, changes: [])
    }

    // MARK: - Channel messages

    private mutating func observeChannelMessage(
        _ kind: PhaseMessageKind, _ message: UnsafeRawBufferPointer, _ direction: Direction
    ) -> PhaseObservation {
        let connectionBefore = connectionPhase
        // open_channel and open_channel2 put chain_hash before the temporary_channel_id.
        let idOffset = (kind == .openChannel || kind == .openChannel2) ? 34 : 2
        let id = ChannelID(message, at: idOffset)

        var isNew = false
        let i: Int
        if let found = index(of: id) {
            if (kind == .openChannel || kind == .openChannel2) && channels[found].phase == .closed {
                // A closed channel's id reused by a new open: the new channel replaces the record.
                channels[found] = ChannelState(id: id, phase: .opening)
                isNew = true
            }
            i = found
        } else {
            guard let implied = kind.phaseForUnknownChannel, !id.isZero, let slot = makeRoom() else {
                return attribute(id)
            }
            channels.insert(ChannelState(id: id, phase: implied), at: slot)
            i = slot
            isNew = true
        }

        let from = isNew ? connectionBefore : channels[i].phase
        var renamedFrom: ChannelID?

        switch kind {
        case .openChannel2:
            if channels[i].temporaryID == nil {
                channels[i].v2InitiatorRevocationBasepoint = Array(
                    UnsafeRawBufferPointer(rebasing: message[Offsets.openChannel2RevocationBasepoint...]).prefix(33))
            }
        case .acceptChannel2:
            if channels[i].temporaryID == nil, let initiator = channels[i].v2InitiatorRevocationBasepoint {
                let accepter = Array(UnsafeRawBufferPointer(
                    rebasing: message[Offsets.acceptChannel2RevocationBasepoint...]).prefix(33))
                if let final = Self.v2ChannelID(initiator, accepter) {
                    renamedFrom = rename(i, to: final)
                }
            }
        case .fundingCreated:
            if channels[i].temporaryID == nil {
                renamedFrom = rename(i, to: Self.v1ChannelID(message))
            }
        case .txSignatures:
            if channels[i].phase == .opening { channels[i].txSignaturesSeen = true }
        case .txAbort:
            // Before any tx_signatures the open is forgotten (BOLT 2); during a splice or an RBF
            // after signatures only the negotiation ends and the channel carries on.
            if channels[i].phase == .opening && !channels[i].txSignaturesSeen {
                close(i, by: .aborted)
            }
        case .channelReady:
            if channels[i].phase == .opening { channels[i].phase = .channel }
        case .channelReestablish:
            if channels[i].phase < .channel { channels[i].phase = .channel }
        case .addHTLC, .removeHTLC, .updateFee:
            promoteFromOpening(i)
            if kind == .addHTLC {
                if channels[i].liveHTLCs < .max { channels[i].liveHTLCs += 1 }
            } else if kind == .removeHTLC {
                if channels[i].liveHTLCs > 0 { channels[i].liveHTLCs -= 1 }
            }
            channels[i].updates[direction] = .awaitingSenderCommitment
        case .commitmentSigned:
            advance(i, sender: direction, from: .awaitingSenderCommitment, to: .awaitingPeerRevocation)
            advance(i, sender: direction.reversed, from: .awaitingPeerCommitment, to: .awaitingSenderRevocation)
        case .revokeAndAck:
            promoteFromOpening(i)
            advance(i, sender: direction.reversed, from: .awaitingPeerRevocation, to: .awaitingPeerCommitment)
            advance(i, sender: direction, from: .awaitingSenderRevocation, to: .settled)
        case .channelOperation:
            promoteFromOpening(i)
        case .shutdown:
            channels[i].shutdownMask |= direction.phaseBit
        case .closingSigned:
            observeClosingSigned(i, fee: PhaseWire.u64(message, at: Offsets.closingSignedFee), direction)
        case .closingComplete:
            channels[i].negotiationSeen = true
            channels[i].awaitingClosingSig |= direction.phaseBit
            let state = channels[i]
            if state.phase < .closing || (state.phase == .closed && state.closedBy == .negotiated) {
                channels[i].phase = .closing
                channels[i].closedBy = .notClosed
            }
        case .closingSig:
            channels[i].negotiationSeen = true
            channels[i].awaitingClosingSig &= ~direction.reversed.phaseBit
            if channels[i].phase < .closing { channels[i].phase = .closing }
            if channels[i].phase == .closing && channels[i].awaitingClosingSig == 0 {
                close(i, by: .negotiated)
            }
        case .openChannel, .acceptChannel, .fundingSigned, .interactiveTx, .startBatch,
            .initMessage, .error, .warning:
            break
        }

        applyShutdownRule(i)
        return finish(i, from: from, connectionBefore: connectionBefore, isNew: isNew, renamedFrom: renamedFrom)
    }

    /// Legacy negotiation ends when one side repeats the fee the other side last proposed.
    private mutating func observeClosingSigned(_ i: Int, fee: UInt64, _ direction: Direction) {
        guard channels[i].phase != .closed else { return }
        channels[i].negotiationSeen = true
        channels[i].phase = .closing
        channels[i].lastClosingFee[direction] = fee
        if channels[i].lastClosingFee[direction.reversed] == fee {
            close(i, by: .negotiated)
        }
    }

    /// Both `shutdown`s sent and nothing outstanding: `channeld` hands over to `closingd`. An
    /// update seen after that inference (HTLCs the tracker could not see) takes it back, unless a
    /// closing message already proved the negotiation started.
    private mutating func applyShutdownRule(_ i: Int) {
        let state = channels[i]
        switch state.phase {
        case .opening, .channel:
            if state.shutdownMask == 3 && !state.hasPendingUpdates { channels[i].phase = .closing }
        case .closing:
            if !state.negotiationSeen && state.hasPendingUpdates { channels[i].phase = .channel }
        case .initializing, .idle, .closed:
            break
        }
    }

    private mutating func promoteFromOpening(_ i: Int) {
        if channels[i].phase == .opening { channels[i].phase = .channel }
    }

    private mutating func advance(_ i: Int, sender: Direction, from: UpdateStage, to: UpdateStage) {
        if channels[i].updates[sender] == from { channels[i].updates[sender] = to }
    }

    private mutating func close(_ i: Int, by cause: CloseCause) {
        channels[i].phase = .closed
        channels[i].closedBy = cause
    }

    /// Gives channel `i` its final id; returns the temporary id it had.
    private mutating func rename(_ i: Int, to final: ChannelID) -> ChannelID? {
        let temporary = channels[i].id
        guard final != temporary, index(of: final) == nil else { return nil }
        channels[i].id = final
        channels[i].temporaryID = temporary
        channels[i].v2InitiatorRevocationBasepoint = nil
        return temporary
    }

    /// Builds the observation of a channel message and reports what changed.
    private mutating func finish(
        _ i: Int, from: ChannelPhase, connectionBefore: ChannelPhase, isNew: Bool, renamedFrom: ChannelID?
    ) -> PhaseObservation {
        let state = channels[i]
        let to = state.phase
        guard from != to || isNew || renamedFrom != nil else {
            return PhaseObservation(channel: state.id, before: from, after: to, changes: [])
        }
        var changes = [PhaseChange(channel: state.id, from: from, to: to, renamedFrom: renamedFrom, isNewChannel: isNew)]
        let connectionAfter = refreshConnectionPhase()
        if connectionAfter != connectionBefore {
            changes.append(PhaseChange(channel: nil, from: connectionBefore, to: connectionAfter))
        }
        return PhaseObservation(channel: state.id, before: from, after: to, changes: changes)
    }

    // MARK: - Bookkeeping

    private func index(of id: ChannelID) -> Int? {
        channels.firstIndex { $0.id == id || $0.temporaryID == id }
    }

    /// Where a new channel record goes, making room if the table is full; `nil` when it is full of
    /// live channels.
    private mutating func makeRoom() -> Int? {
        if channels.count < Self.maximumTrackedChannels { return channels.count }
        guard let oldestClosed = channels.firstIndex(where: { $0.phase == .closed }) else { return nil }
        channels.remove(at: oldestClosed)
        return channels.count
    }

    @discardableResult
    private mutating func refreshConnectionPhase() -> ChannelPhase {
        var phase = ChannelPhase.initializing
        if initMask == 3 {
            // No channel yet: ready to open one (`opening`). Channels, all closed: `idle`.
            phase = !channels.isEmpty && channels.allSatisfy({ $0.phase == .closed }) ? .idle : .opening
            for channel in channels where channel.phase != .closed && channel.phase > phase {
                phase = channel.phase
            }
        }
        connectionPhase = phase
        return phase
    }

    // MARK: - channel_id derivations (BOLT 2, "Definition of channel_id")

    /// v1: `funding_txid` with `funding_output_index` exclusive-ORed big-endian into its last two
    /// bytes, both as they appear in `funding_created`.
    static func v1ChannelID(_ fundingCreated: UnsafeRawBufferPointer) -> ChannelID {
        var id = ChannelID(fundingCreated, at: Offsets.fundingCreatedTxid)
        id.w3 ^= UInt64(PhaseWire.u16(fundingCreated, at: Offsets.fundingCreatedOutputIndex))
        return id
    }

    /// v2: SHA-256 of the two `revocation_basepoint`s, the lesser (as 33-byte strings) first.
    static func v2ChannelID(_ first: [UInt8], _ second: [UInt8]) -> ChannelID? {
        guard first.count == 33, second.count == 33, sodiumIsReady else { return nil }
        let input = second.lexicographicallyPrecedes(first) ? second + first : first + second
        var digest = [UInt8](repeating: 0, count: 32)
        guard crypto_hash_sha256(&digest, input, UInt64(input.count)) == 0 else { return nil }
        return ChannelID(bytes: digest)
    }
}

/// libsodium must be initialised once before use; a global is initialised exactly once, lazily
/// and thread-safely.
private let sodiumIsReady: Bool = sodium_init() >= 0

/// Byte offsets (counting the 2-byte type) of the fields the tracker reads, from the BOLT 2 layouts.
private enum Offsets {
    /// After type, chain_hash, temporary_channel_id, two u32 feerates, four u64, two u16, a u32
    /// locktime and the 33-byte funding_pubkey.
    static let openChannel2RevocationBasepoint = 2 + 145
    /// After type, temporary_channel_id, four u64, a u32 minimum_depth, two u16 and funding_pubkey.
    static let acceptChannel2RevocationBasepoint = 2 + 105
    static let fundingCreatedTxid = 2 + 32
    static let fundingCreatedOutputIndex = 2 + 64
    static let closingSignedFee = 2 + 32
}

/// End of a `channel_id` that directly follows the type.
private let idEnd = 2 + 32

/// What a message type means to the tracker. `nil` (from `init(type:)`) is the fast path: gossip,
/// custom messages, ping/pong, peer storage and unknown types belong to the connection.
enum PhaseMessageKind: Sendable {
    case initMessage, error, warning
    case openChannel, acceptChannel, fundingCreated, fundingSigned
    case openChannel2, acceptChannel2, interactiveTx, txSignatures, txAbort
    case channelReady, channelReestablish
    case addHTLC, removeHTLC, updateFee, commitmentSigned, revokeAndAck, startBatch
    /// `stfu`, splicing and `announcement_signatures`: only `channeld` handles them.
    case channelOperation
    case shutdown, closingSigned, closingComplete, closingSig

    init?(type: UInt16) {
        switch type {
        case 1: self = .warning
        case 2: self = .channelOperation  // stfu
        case 16: self = .initMessage
        case 17: self = .error
        case 32: self = .openChannel
        case 33: self = .acceptChannel
        case 34: self = .fundingCreated
        case 35: self = .fundingSigned
        case 36: self = .channelReady
        case 38: self = .shutdown
        case 39: self = .closingSigned
        case 40: self = .closingComplete
        case 41: self = .closingSig
        case 64: self = .openChannel2
        case 65: self = .acceptChannel2
        case 66...70, 72, 73: self = .interactiveTx  // tx_add_*, tx_remove_*, tx_complete, tx_*_rbf
        case 71: self = .txSignatures
        case 74: self = .txAbort
        case 77, 80, 81: self = .channelOperation  // splice_locked, splice_init, splice_ack
        case 127: self = .startBatch
        case 128: self = .addHTLC
        case 130, 131, 135: self = .removeHTLC
        case 132: self = .commitmentSigned
        case 133: self = .revokeAndAck
        case 134: self = .updateFee
        case 136: self = .channelReestablish
        case 259: self = .channelOperation  // announcement_signatures (BOLT 7)
        default: return nil
        }
    }

    /// Bytes (with the type) a message must have for the tracker to use it.
    var minimumLength: Int {
        switch self {
        case .openChannel: 2 + 32 + 32
        case .openChannel2: 2 + 145 + 33
        case .acceptChannel2: 2 + 105 + 33
        case .fundingCreated: 2 + 64 + 2
        case .closingSigned: 2 + 32 + 8
        default: idEnd
        }
    }

    /// The phase a channel first seen through this message must be in; `nil` for messages that
    /// never create a channel record.
    var phaseForUnknownChannel: ChannelPhase? {
        switch self {
        case .openChannel, .acceptChannel, .fundingCreated, .fundingSigned,
            .openChannel2, .acceptChannel2, .interactiveTx, .txSignatures:
            .opening
        case .channelReady, .channelReestablish, .addHTLC, .removeHTLC, .updateFee,
            .commitmentSigned, .revokeAndAck, .channelOperation, .shutdown:
            .channel
        case .closingSigned, .closingComplete, .closingSig:
            .closing
        case .initMessage, .error, .warning, .txAbort, .startBatch:
            nil
        }
    }
}

import LNWire

/// What the live node calls the identifiers the recording used: its `temporary_channel_id`s and
/// `channel_id`s, learned during the replay and substituted into what lnrr sends.
///
/// A node that picks its own values (a fresh `temporary_channel_id` when it opens, a fresh funding
/// transaction, fresh basepoints for a v2 channel) answers the recorded ids with "unknown
/// channel". The binding maps each recorded id to its live counterpart:
/// - a `temporary_channel_id` from the `open_channel`/`open_channel2` the live node sent;
/// - a final `channel_id` from the two phase trackers, one fed the recorded messages and one the
///   live ones: when both rename a channel at the same step (v1 at `funding_created`, from the
///   funding outpoint; v2 at `accept_channel2`, from the revocation basepoints), the two final ids
///   are the same channel.
///
/// Only identifiers adapt. Anything signed over data the live node chose (commitment signatures,
/// funding signatures) still carries the recording's values and needs the played side's keys.
public struct IdentifierBinding: Sendable {
    /// Which field an identifier came from.
    public enum Kind: String, Sendable {
        case temporaryChannelID = "temporary_channel_id"
        case channelID = "channel_id"
    }

    /// One recorded identifier and its live counterpart.
    public struct Pair: Sendable, Equatable {
        public var kind: Kind
        public var recorded: ChannelID
        public var live: ChannelID
    }

    /// Every pair learned, in the order learned.
    public private(set) var pairs: [Pair] = []
    private var byRecorded: [ChannelID: ChannelID] = [:]
    private var byLive: [ChannelID: ChannelID] = [:]

    public init() {}

    /// The live id for a recorded one, if bound.
    public func live(for recorded: ChannelID) -> ChannelID? { byRecorded[recorded] }

    /// The recorded id for a live one, if bound.
    public func recorded(for live: ChannelID) -> ChannelID? { byLive[live] }

    /// Binds `recorded` to `live` unless either is zero, they are equal, or either is already
    /// bound (one live channel stands for one recorded channel); returns the new pair.
    @discardableResult
    public mutating func bind(_ kind: Kind, recorded: ChannelID, live: ChannelID) -> Pair? {
        guard recorded != live, !recorded.isZero, !live.isZero, byRecorded[recorded] == nil, byLive[live] == nil else { return nil }
        byRecorded[recorded] = live
        byLive[live] = recorded
        let pair = Pair(kind: kind, recorded: recorded, live: live)
        pairs.append(pair)
        return pair
    }

    /// Learns from a live message and the recorded one it matched (same type): the
    /// `temporary_channel_id` the live node chose in the `open_channel` or `open_channel2` it
    /// sent. (Other messages echo ids; a different one there is the node's doing, not a binding.)
    /// Returns the pairs learned.
    public mutating func learn(recorded: [UInt8], live: [UInt8]) -> [Pair] {
        guard let type = WireMessage.type(recorded), type == 32 || type == 64, WireMessage.type(live) == type else { return [] }
        var learned: [Pair] = []
        for slot in Self.slots(of: type) where slot.kind == .temporaryChannelID {
            guard let r = Self.id(in: recorded, at: slot.offset), let l = Self.id(in: live, at: slot.offset) else { continue }
            if let pair = bind(.temporaryChannelID, recorded: r, live: l) { learned.append(pair) }
        }
        return learned
    }

    /// Learns from the two phase trackers' views of one step: when both gave a channel its final
    /// id there (v1 `funding_created`, v2 `accept_channel2`), the two final ids are one channel.
    public mutating func learn(recorded: PhaseObservation, live: PhaseObservation) -> [Pair] {
        guard let r = recorded.changes.first(where: { $0.renamedFrom != nil }), let rFinal = r.channel,
              let l = live.changes.first(where: { $0.renamedFrom != nil }), let lFinal = l.channel else { return [] }
        var learned: [Pair] = []
        if let pair = bind(.temporaryChannelID, recorded: r.renamedFrom!, live: l.renamedFrom!) { learned.append(pair) }
        if let pair = bind(.channelID, recorded: rFinal, live: lFinal) { learned.append(pair) }
        return learned
    }

    /// `message` with every bound identifier in its id fields replaced by the live one; the same
    /// array (not copied) when nothing is bound there.
    public func rewrite(_ message: [UInt8]) -> [UInt8] {
        guard !byRecorded.isEmpty, let type = WireMessage.type(message) else { return message }
        var out = message
        for slot in Self.slots(of: type) {
            guard let r = Self.id(in: message, at: slot.offset), let l = byRecorded[r] else { continue }
            out.replaceSubrange(slot.offset..<slot.offset + 32, with: l.bytes)
        }
        return out
    }

    /// Whether `message` carries a channel identifier the binding would rewrite.
    public func rewrites(_ message: [UInt8]) -> Bool {
        guard !byRecorded.isEmpty, let type = WireMessage.type(message) else { return false }
        return Self.slots(of: type).contains { Self.id(in: message, at: $0.offset).flatMap { byRecorded[$0] } != nil }
    }

    // MARK: Where the identifiers are

    struct Slot: Sendable {
        var offset: Int
        var kind: Kind
    }

    static func id(in message: [UInt8], at offset: Int) -> ChannelID? {
        guard message.count >= offset + 32 else { return nil }
        return ChannelID(bytes: message[offset..<offset + 32])
    }

    /// The id fields of a message type: `channel_id`-typed fields and `temporary_channel_id` in the
    /// fixed-size part that starts every message (offsets count the 2-byte type), from the BOLT CSVs.
    static func slots(of type: UInt16) -> [Slot] { slotTable[type] ?? [] }

    private static let slotTable: [UInt16: [Slot]] = {
        var table: [UInt16: [Slot]] = [:]
        for spec in MessageCatalogue.messages {
            var offset = 2
            var slots: [Slot] = []
            for field in spec.fields {
                guard case .fundamental(let f) = field.kind, let size = f.fixedSize else { break }
                let count: Int
                switch field.count {
                case .one: count = 1
                case .fixed(let n): count = n
                default: count = -1
                }
                guard count >= 0 else { break }
                // `channel_id`-typed fields, and `temporary_channel_id`, which the CSVs give as 32 bytes.
                if (f == .channel_id && count == 1) || (field.name == "temporary_channel_id" && size * count == 32) {
                    slots.append(Slot(offset: offset, kind: field.name == "temporary_channel_id" ? .temporaryChannelID : .channelID))
                }
                offset += size * count
            }
            if !slots.isEmpty { table[spec.type] = slots }
        }
        return table
    }()
}

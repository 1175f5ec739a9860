/// The `delivery:` comment of a message record: what the receiver got, when that is not "the
/// recorded bytes, once" (docs/recording-format.md). The proxy writes it and replay reads it, so the
/// vocabulary lives here, with the format.
public enum DeliveryNote: String, Sendable, CaseIterable {
    /// Not delivered: dropped, cut by a disconnect, or sent into a halted connection.
    case none
    /// Delivered twice (`duplicate`).
    case twice
    /// Not delivered as is: the next record, a `replacement`, was delivered instead.
    case replaced
    /// Made by lnrr from the message before it (a rule's `replace`).
    case replacement
    /// A replacement delivered twice.
    case replacementTwice = "replacement, twice"
    /// Made up by lnrr (a rule's `inject`, the control socket).
    case injected

    static let prefix = "delivery: "

    /// The comment as written into the record.
    public var comment: String { Self.prefix + rawValue }

    /// The note among a record's comments, if it has one.
    public init?(comments: [String]) {
        guard let text = comments.first(where: { $0.hasPrefix(Self.prefix) }),
              let note = DeliveryNote(rawValue: String(text.dropFirst(Self.prefix.count))) else { return nil }
        self = note
    }

    /// How many times the receiver got the record's bytes.
    public var copies: Int {
        switch self {
        case .none, .replaced: 0
        case .twice, .replacementTwice: 2
        case .replacement, .injected: 1
        }
    }

    /// Whether lnrr, not the sender, made the message.
    public var madeByLnrr: Bool { self == .replacement || self == .replacementTwice || self == .injected }
}

extension RecordedMessage {
    /// What the receiver got; nil means the recorded bytes, once.
    public var delivery: DeliveryNote? { DeliveryNote(comments: comments) }
}

import LNWire

/// A rule file: an ordered list of rules and the seed their probabilities draw from.
public struct RuleSet: Sendable {
    public var rules: [Rule]
    /// Seed of the deterministic generator behind `probability:`; same seed, same run.
    public var seed: UInt64

    public init(rules: [Rule] = [], seed: UInt64 = 0) {
        self.rules = rules
        self.seed = seed
    }
}

/// One rule: when `match` holds for a message, do `action`.
public struct Rule: Sendable {
    public var name: String
    public var match: Match
    public var action: RuleAction
    /// Where it was defined, for messages.
    public var line: Int

    public init(name: String, match: Match, action: RuleAction, line: Int = 0) {
        self.name = name
        self.match = match
        self.action = action
        self.line = line
    }
}

/// Conditions on a message; every one given must hold.
public struct Match: Sendable {
    public var direction: Direction?
    /// Allowed types as closed ranges (a single type is a one-element range).
    public var types: [ClosedRange<UInt16>]?
    public var parity: Parity?
    /// The channel's phase before the message.
    public var phases: Set<ChannelPhase>?
    /// A phase change the message causes.
    public var phaseChange: (from: ChannelPhase, to: ChannelPhase)?
    public var nth: Int?
    public var every: Int?
    public var count: Int?
    /// Only once the named rule has fired.
    public var after: String?
    public var nodeA: String?
    public var nodeB: String?
    /// Prefix of the payload (after the 2-byte type).
    public var payloadPrefix: [UInt8]?
    /// Regular expression over the payload's lowercase hex.
    public var payloadRegex: String?
    /// Decoded top-level field values, as text (hex for bytes, decimal for integers, BxTxO for scids).
    public var fields: [String: String]?
    public var probability: Double?

    public init() {}

    public enum Parity: String, Sendable { case odd, even }
}

/// What a rule does.
public enum RuleAction: Sendable {
    case forward
    case drop
    case delay(milliseconds: Int)
    case inject(Injection)
    case replace(Replacement)
    case duplicate
    case disconnect(DisconnectKind)
    case mark(String)

    /// Marks annotate and let later rules decide; every other action decides.
    public var isMark: Bool { if case .mark = self { return true } else { return false } }
}

/// A message to inject.
public struct Injection: Sendable {
    /// The message (type + payload), already built.
    public var message: [UInt8]
    /// Which way it goes; nil means the matched message's direction.
    public var direction: Direction?
    /// Before or after the matched message.
    public var before: Bool
}

/// A replacement for the matched message.
public enum Replacement: Sendable {
    /// A whole new message.
    case message([UInt8])
    /// Selected fields of the matched message, re-encoded.
    case fields([(String, JSONValue)])
}

/// Core Lightning's dev-disconnect behaviours, from outside the node.
public enum DisconnectKind: String, Sendable, CaseIterable {
    /// `-`: close before forwarding this message.
    case before
    /// `+`: forward this message, then close.
    case after
    /// `$`: drop this message and carry on.
    case drop
    /// `0`: from this message on, swallow everything both ways and read no more.
    case blackhole
    /// `x`: forward this message, then stop using the connection without closing it.
    case stall
    /// `<`: close after the receiver got this message.
    case afterReceive = "after-receive"

    /// The dev-disconnect prefix character.
    public var symbol: Character {
        switch self {
        case .before: return "-"
        case .after: return "+"
        case .drop: return "$"
        case .blackhole: return "0"
        case .stall: return "x"
        case .afterReceive: return "<"
        }
    }

    /// Whether the matched message still reaches its receiver (`after`, `stall`, `after-receive`).
    public var deliversMessage: Bool {
        switch self {
        case .before, .drop, .blackhole: false
        case .after, .stall, .afterReceive: true
        }
    }

    /// Whether the kind ends the connection (both sockets close) once its message is through.
    public var closesConnection: Bool { self == .before || self == .after || self == .afterReceive }

    public init?(symbol: Character) {
        guard let kind = Self.allCases.first(where: { $0.symbol == symbol }) else { return nil }
        self = kind
    }
}

/// A message lnrr sends on its own because a rule said so.
public struct InjectedMessage: Sendable, Equatable {
    /// Type + payload.
    public var message: [UInt8]
    public var direction: Direction

    public init(message: [UInt8], direction: Direction) {
        self.message = message
        self.direction = direction
    }
}

/// What the rules do to one message: the single answer of `RuleEngine.decide`, consumed by the
/// proxy and by replay through `EffectPlan` (never by comparing bytes).
public struct RuleEffects: Sendable, Equatable {
    /// What reaches the receiver in place of the matched message.
    public enum Delivery: Sendable, Equatable {
        /// The sender's bytes, as they came.
        case original
        /// Other bytes (a `replace` that changed something).
        case replacement([UInt8])
        /// Nothing (`drop`, or a disconnect that swallows the message).
        case none
    }

    public var delivery: Delivery = .original
    /// How many times the delivery happens (2 for `duplicate`).
    public var copies = 1
    /// Hold the message, and everything behind it in its direction, this long first.
    public var delayMilliseconds = 0
    /// Messages sent before / after the matched one, in this order.
    public var injectBefore: [InjectedMessage] = []
    public var injectAfter: [InjectedMessage] = []
    public var disconnect: DisconnectKind?
    /// What the rules did, in words, for the recording (`rule "x": dropped`).
    public var annotations: [String] = []

    public init() {}

    /// No rule fired: deliver the original once, nothing to note.
    public static let none = RuleEffects()

    /// Whether no rule fired (the fast path: nothing to annotate, plan or record specially).
    public var isNone: Bool {
        annotations.isEmpty && delivery == .original && copies == 1 && delayMilliseconds == 0
            && injectBefore.isEmpty && injectAfter.isEmpty && disconnect == nil
    }

    /// The replacement bytes, when a rule replaced the message.
    public var replacement: [UInt8]? { if case .replacement(let bytes) = delivery { bytes } else { nil } }

    /// Whether the matched message (or its replacement) reaches the receiver at all.
    public var delivers: Bool { delivery != .none && copies > 0 }
}

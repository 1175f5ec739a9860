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

    public init?(symbol: Character) {
        guard let kind = Self.allCases.first(where: { $0.symbol == symbol }) else { return nil }
        self = kind
    }
}

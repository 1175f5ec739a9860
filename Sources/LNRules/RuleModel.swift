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

extension RuleSet {
    /// The faults of the `at: connect` rules that act toward the receiver of `direction` (their
    /// `dir`, or any), in file order, with the name of the rule each comes from: what a new
    /// connection gets from its first byte.
    public func connectFaults(_ direction: Direction) -> [(rule: String, fault: Fault)] {
        var out: [(rule: String, fault: Fault)] = []
        for rule in rules where rule.match.atConnect && (rule.match.direction ?? direction) == direction {
            for case .fault(let fault) in rule.actions { out.append((rule.name, fault)) }
        }
        return out
    }
}

/// One rule: when `match` holds for a message, do its `actions`, in order.
public struct Rule: Sendable {
    public var name: String
    public var match: Match
    /// What the rule does, in order (`action: [..]` in a rule file; one action is a list of one).
    public var actions: [RuleAction]
    /// Where it was defined, for messages.
    public var line: Int

    public init(name: String, match: Match, action: RuleAction, line: Int = 0) {
        self.init(name: name, match: match, actions: [action], line: line)
    }

    public init(name: String, match: Match, actions: [RuleAction], line: Int = 0) {
        self.name = name
        self.match = match
        self.actions = actions.isEmpty ? [.forward] : actions
        self.line = line
    }

    /// The first action (the only one of most rules).
    public var action: RuleAction {
        get { actions[0] }
        set { actions = [newValue] }
    }

    /// Whether the rule decides the message's fate (see `RuleAction.decides`).
    public var decides: Bool { actions.contains(where: \.decides) }
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
    /// `at: connect`: the rule's faults act on each new connection from its first byte (before
    /// the BOLT 8 handshake), toward the receiver of `direction` (both sides when nil), instead of
    /// when a message matches. Such a rule has no other condition and never matches a message.
    public var atConnect = false

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
    /// A network fault: a random extra delay (timing, like `delay`, but drawn per message).
    case latency(Latency)
    /// A network fault on the connection, from this message on (docs/rules.md, "Faults").
    case fault(Fault)

    /// Marks annotate and let later rules decide.
    public var isMark: Bool { if case .mark = self { return true } else { return false } }

    /// Whether the action decides the matched message's fate: whether, when and how it is
    /// delivered (`forward`, `drop`, `delay`, `duplicate`, `replace`, `disconnect`). The first
    /// firing rule with such an action decides; later rules' deciding actions do not apply.
    /// `mark`, `inject` and the faults add to the message's effects, from every rule that fires.
    public var decides: Bool {
        switch self {
        case .forward, .drop, .delay, .replace, .duplicate, .disconnect: true
        case .inject, .mark, .latency, .fault: false
        }
    }
}

/// A random delay per message: `milliseconds` on average, spread by `jitter` (a uniform draw in
/// ±jitter, or a normal one with standard deviation jitter), never below 0. Order per direction is
/// kept: a message never overtakes the one before it.
public struct Latency: Sendable, Equatable {
    public enum Distribution: String, Sendable, CaseIterable { case uniform, normal }
    public var milliseconds: Double
    public var jitter: Double
    public var distribution: Distribution

    public init(milliseconds: Double, jitter: Double = 0, distribution: Distribution = .uniform) {
        self.milliseconds = milliseconds
        self.jitter = jitter
        self.distribution = distribution
    }

    public var description: String {
        jitter == 0 ? "\(Int(milliseconds)) ms"
            : distribution == .uniform ? "\(Int(milliseconds)) ms ± \(Int(jitter)) (uniform)"
            : "\(Int(milliseconds)) ms, stddev \(Int(jitter)) (normal)"
    }
}

/// A fault on the connection toward the matched message's receiver, in effect from the moment the
/// message is through (toxiproxy's toxics, Lightning-aware: scoped by any rule condition).
public enum Fault: Sendable, Equatable {
    /// At most this many bytes per second are written to the receiver.
    case bandwidth(bytesPerSecond: Int)
    /// Every write to the receiver (one encrypted BOLT 8 frame or a handshake act) goes out as
    /// segments of `bytes` ± `variation` (a seeded uniform draw per segment, at least 1; the last
    /// segment of a write is what remains), `gapMicroseconds` apart.
    case slicer(bytes: Int, gapMicroseconds: Int, variation: Int = 0)
    /// Both sockets close with a TCP RST (SO_LINGER 0) instead of a FIN.
    case reset
    /// When the session ends, its sockets close this much later.
    case slowClose(milliseconds: Int)
    /// Nothing more is relayed either way; the sockets close after this long (0: never).
    case timeout(milliseconds: Int)
    /// The connection closes once this many more bytes (BOLT 8 frames, as written) went to the receiver.
    case limitData(bytes: Int)

    /// Its name in rule files and recordings.
    public var name: String {
        switch self {
        case .bandwidth: "bandwidth"
        case .slicer: "slicer"
        case .reset: "reset"
        case .slowClose: "slow-close"
        case .timeout: "timeout"
        case .limitData: "limit-data"
        }
    }

    /// In words, for the recording and `listrules`.
    public var description: String {
        switch self {
        case .bandwidth(let rate): "bandwidth \(rate) B/s"
        case .slicer(let bytes, let gap, let variation):
            variation == 0 ? "slicer \(bytes) B every \(gap) us" : "slicer \(bytes)±\(variation) B every \(gap) us"
        case .reset: "reset"
        case .slowClose(let ms): "slow-close \(ms) ms"
        case .timeout(let ms): "timeout \(ms) ms"
        case .limitData(let bytes): "limit-data \(bytes) B"
        }
    }
}

/// What the `bandwidth` and `slicer` faults in effect toward one side add up to: the latest of
/// each kind (a later one replaces the earlier; the two combine). Carried out below the BOLT 8
/// handler, on encrypted bytes.
public struct Shaping: Sendable, Equatable, CustomStringConvertible {
    /// At most this many bytes per second; nil: no cap.
    public var bytesPerSecond: Int?
    /// The slicer in effect (a `Fault.slicer`); nil: writes are not cut.
    public var slicer: Fault?
    /// Seeds the slicer's size draws (the rule set's `seed`), so a `variation` is reproducible.
    public var seed: UInt64

    public init(bytesPerSecond: Int? = nil, slicer: Fault? = nil, seed: UInt64 = 0) {
        self.bytesPerSecond = bytesPerSecond
        self.slicer = slicer
        self.seed = seed
    }

    /// The shaping of `faults` taken in order (faults other than `bandwidth` and `slicer` add nothing).
    public init(_ faults: some Sequence<Fault>, seed: UInt64) {
        self.init(seed: seed)
        for fault in faults {
            switch fault {
            case .bandwidth(let rate): bytesPerSecond = rate
            case .slicer: slicer = fault
            default: break
            }
        }
    }

    /// Nothing to shape: writes pass straight through.
    public var isNone: Bool { bytesPerSecond == nil && slicer == nil }

    public var description: String {
        isNone ? "unshaped"
            : [bytesPerSecond.map { Fault.bandwidth(bytesPerSecond: $0).description }, slicer?.description]
                .compactMap { $0 }.joined(separator: ", ")
    }
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
    /// The note of the rule that injected it, for the injected message's record.
    public var note: String?

    public init(message: [UInt8], direction: Direction, note: String? = nil) {
        self.message = message
        self.direction = direction
        self.note = note
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
    /// Faults that take effect on the connection toward the receiver once the message is through.
    public var faults: [Fault] = []
    /// The name of the rule each of `faults` comes from, in the same order (a shaping fault is
    /// undone when its rule is no longer in force).
    public var faultRules: [String] = []
    /// What the rules did, in words, for the recording (`rule "x": dropped`).
    public var annotations: [String] = []

    public init() {}

    /// No rule fired: deliver the original once, nothing to note.
    public static let none = RuleEffects()

    /// Whether no rule fired (the fast path: nothing to annotate, plan or record specially).
    public var isNone: Bool {
        annotations.isEmpty && delivery == .original && copies == 1 && delayMilliseconds == 0
            && injectBefore.isEmpty && injectAfter.isEmpty && disconnect == nil && faults.isEmpty
    }

    /// The replacement bytes, when a rule replaced the message.
    public var replacement: [UInt8]? { if case .replacement(let bytes) = delivery { bytes } else { nil } }

    /// Whether the matched message (or its replacement) reaches the receiver at all.
    public var delivers: Bool { delivery != .none && copies > 0 }
}

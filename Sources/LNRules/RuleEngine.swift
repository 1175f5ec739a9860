import Foundation
import LNWire

/// One message as the engine sees it.
public struct MessageContext {
    public var direction: Direction
    /// Type + payload.
    public var bytes: [UInt8]
    /// The channel's phase before and after this message (connection phase for channel-less messages).
    public var phaseBefore: ChannelPhase
    public var phaseAfter: ChannelPhase
    /// Every phase change the message caused (a message can move a channel and the connection).
    public var changes: [(from: ChannelPhase, to: ChannelPhase)]
    public var nodeA: String?
    public var nodeB: String?

    public init(direction: Direction, bytes: [UInt8], phaseBefore: ChannelPhase, phaseAfter: ChannelPhase,
                changes: [(from: ChannelPhase, to: ChannelPhase)] = [], nodeA: String? = nil, nodeB: String? = nil) {
        self.direction = direction
        self.bytes = bytes
        self.phaseBefore = phaseBefore
        self.phaseAfter = phaseAfter
        self.changes = changes
        self.nodeA = nodeA
        self.nodeB = nodeB
    }

    var type: UInt16 { WireMessage.type(bytes) ?? 0 }
}

/// Applies a rule set to one session's messages, in order. Deterministic: the same messages and
/// seed give the same decisions. One engine per session (it keeps the occurrence counters).
public struct RuleEngine {
    public let rules: RuleSet
    private var seen: [Int]
    private var fired: [Int]
    private var firedNames = Set<String>()
    private var random: SplitMix64
    /// Indexes of the rules that can possibly match each type, so other messages cost one lookup.
    private let candidates: [UInt16: [Int]]
    private let anyType: [Int]
    private var regexes: [Int: BoundedRegex] = [:]

    public init(rules: RuleSet) {
        self.rules = rules
        seen = Array(repeating: 0, count: rules.rules.count)
        fired = Array(repeating: 0, count: rules.rules.count)
        random = SplitMix64(seed: rules.seed)
        var candidates: [UInt16: [Int]] = [:]
        var anyType: [Int] = []
        for (index, rule) in rules.rules.enumerated() {
            // An `at: connect` rule acts when a connection starts (`RuleSet.connectFaults`), never
            // on a message; it has fired from the start, for `after:`.
            if rule.match.atConnect {
                firedNames.insert(rule.name)
                continue
            }
            if let types = rule.match.types, types.reduce(0, { $0 + $1.count }) <= 4096 {
                for range in types { for t in range { candidates[t, default: []].append(index) } }
            } else {
                anyType.append(index)
            }
            if let pattern = rule.match.payloadRegex { regexes[index] = try? BoundedRegex(pattern) }
        }
        self.candidates = candidates.mapValues { ($0 + anyType).sorted() }
        self.anyType = anyType
    }

    /// Whether any rule could apply to `type` (false lets callers skip building a context).
    public func mayApply(to type: UInt16) -> Bool { candidates[type] != nil || !anyType.isEmpty }

    /// What the rules do to one message; `.none` when no rule fired.
    public mutating func decide(_ context: MessageContext) -> RuleEffects {
        var decision = RuleEffects.none
        let indexes = candidates[context.type] ?? anyType
        var decoded: [String: String]?
        var decided = false
        for index in indexes {
            let rule = rules.rules[index]
            guard staticMatch(rule.match, context, index: index, decoded: &decoded) else { continue }
            // Every rule counts the messages it matches, even once an earlier rule has decided, so
            // `nth: 2` means the second such message whatever other rules did to the first.
            seen[index] += 1
            // Once a rule decided the message's fate, a rule that could only decide it too is not
            // tried (nor counted as firing); one that adds effects (inject, mark, faults) still acts.
            if decided && rule.actions.allSatisfy(\.decides) { continue }
            let m = rule.match
            if let nth = m.nth, seen[index] != nth { continue }
            if let every = m.every, seen[index] % every != 0 { continue }
            if let count = m.count, fired[index] >= count { continue }
            if let p = m.probability, random.nextDouble() >= p { continue }
            fired[index] += 1
            firedNames.insert(rule.name)
            for action in rule.actions {
                if decided && action.decides {
                    decision.annotations.append("rule \"\(rule.name)\": \(Self.word(action)) not applied (an earlier rule decided this message)")
                    continue
                }
                apply(action, of: rule, context, &decision)
            }
            if rule.decides { decided = true }
        }
        return decision
    }

    /// The action's name, for "not applied" notes.
    static func word(_ action: RuleAction) -> String {
        switch action {
        case .forward: "forward"
        case .drop: "drop"
        case .delay: "delay"
        case .duplicate: "duplicate"
        case .replace: "replace"
        case .disconnect: "disconnect"
        case .inject: "inject"
        case .mark: "mark"
        case .latency: "latency"
        case .fault(let f): f.name
        }
    }

    /// One draw of a latency, in whole milliseconds (never negative).
    mutating func draw(_ latency: Latency) -> Int {
        var ms = latency.milliseconds
        if latency.jitter > 0 {
            switch latency.distribution {
            case .uniform:
                ms += latency.jitter * (2 * random.nextDouble() - 1)
            case .normal:
                // Box-Muller: two uniform draws give one standard normal one.
                let u1 = max(random.nextDouble(), Double.leastNonzeroMagnitude), u2 = random.nextDouble()
                ms += latency.jitter * (-2 * Foundation.log(u1)).squareRoot() * cos(2 * Double.pi * u2)
            }
        }
        return max(0, Int(ms.rounded()))
    }

    private func staticMatch(_ m: Match, _ c: MessageContext, index: Int, decoded: inout [String: String]?) -> Bool {
        if let d = m.direction, d != c.direction { return false }
        if let types = m.types, !types.contains(where: { $0.contains(c.type) }) { return false }
        if let parity = m.parity, (c.type % 2 == 1) != (parity == .odd) { return false }
        if let phases = m.phases, !phases.contains(c.phaseBefore) { return false }
        if let change = m.phaseChange, !c.changes.contains(where: { $0.from == change.from && $0.to == change.to }) { return false }
        if let after = m.after, !firedNames.contains(after) { return false }
        if let a = m.nodeA, a != c.nodeA { return false }
        if let b = m.nodeB, b != c.nodeB { return false }
        let payload = c.bytes.dropFirst(2)
        if let prefix = m.payloadPrefix, !payload.starts(with: prefix) { return false }
        if let regex = regexes[index], !regex.matchesHex(of: payload) { return false }  // linear time: BoundedRegex
        if let wanted = m.fields {
            if decoded == nil { decoded = Self.fieldTexts(c.bytes) }
            for (name, value) in wanted where decoded?[name] != value { return false }
        }
        return true
    }

    /// Top-level fields as the text rules compare against.
    static func fieldTexts(_ bytes: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        for field in WireCodec.decode(bytes).fields {
            switch field.value.json(fieldName: field.name) {
            case .string(let s): out[field.name] = s.lowercased()
            case .integer(let t): out[field.name] = t
            case .object(let pairs): if case .string(let hex)? = pairs.first(where: { $0.0 == "hex" })?.1 { out[field.name] = hex }
            default: break
            }
        }
        return out
    }

    private mutating func apply(_ action: RuleAction, of rule: Rule, _ c: MessageContext, _ d: inout RuleEffects) {
        let label = "rule \"\(rule.name)\""
        switch action {
        case .latency(let latency):
            let ms = draw(latency)
            d.delayMilliseconds += ms
            d.annotations.append("\(label): latency \(ms) ms (\(latency.description))")
        case .fault(let fault):
            d.faults.append(fault)
            d.faultRules.append(rule.name)
            d.annotations.append("\(label): fault \(fault.description)")
        case .forward:
            d.annotations.append("\(label): forward")
        case .drop:
            d.delivery = .none
            d.annotations.append("\(label): dropped")
        case .delay(let ms):
            d.delayMilliseconds += ms
            d.annotations.append("\(label): delayed \(ms) ms")
        case .duplicate:
            d.copies = 2
            d.annotations.append("\(label): duplicated")
        case .mark(let text):
            d.annotations.append("\(label): \(text)")
        case .disconnect(let kind):
            d.disconnect = kind
            if !kind.deliversMessage { d.delivery = .none }
            d.annotations.append("\(label): disconnect \(kind.rawValue) (\(kind.symbol))")
        case .inject(let injection):
            let direction = injection.direction ?? c.direction
            let note = "\(label): injected \(MessageCatalogue.displayName(of: WireMessage.type(injection.message) ?? 0)) \(direction.rawValue) \(injection.before ? "before" : "after") this message"
            if injection.before {
                d.injectBefore.append(InjectedMessage(message: injection.message, direction: direction, note: note))
            } else {
                d.injectAfter.append(InjectedMessage(message: injection.message, direction: direction, note: note))
            }
            d.annotations.append(note)
        case .replace(let replacement):
            switch replacement {
            case .message(let bytes):
                d.delivery = .replacement(bytes)
                d.annotations.append("\(label): replaced")
            case .fields(let changes):
                let decoded = WireCodec.decode(c.bytes)
                guard decoded.isComplete, let name = decoded.name, case .object(var pairs) = decoded.fields.json else {
                    d.annotations.append("\(label): replace skipped: the message does not decode")
                    return
                }
                for (key, value) in changes {
                    if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = value } else { pairs.append((key, value)) }
                }
                // Length fields follow the new values.
                let spec = MessageCatalogue.spec(of: c.type)!
                let lengthFields = Set(spec.fields.compactMap { f -> String? in if case .field(let l) = f.count { return l } else { return nil } })
                let changed = Set(changes.map(\.0))
                pairs.removeAll { lengthFields.contains($0.0) && !changed.contains($0.0) }
                do {
                    let bytes = try WireCodec.encode(name: name, fields: .object(pairs))
                    // Setting fields to the values they have changes nothing: the receiver gets the
                    // sender's bytes, and the recording says so (no replacement record).
                    if bytes != c.bytes { d.delivery = .replacement(bytes) }
                    d.annotations.append("\(label): replaced fields \(changes.map(\.0).joined(separator: ", "))")
                } catch {
                    d.annotations.append("\(label): replace skipped: \(error)")
                }
            }
        }
    }
}

/// SplitMix64: a small, fast, seedable generator. Rules need reproducibility, not secrecy; the
/// proxy's slicer draws its segment sizes from one too.
public struct SplitMix64: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

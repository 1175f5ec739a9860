import LNWire

/// One step of what happens to a relayed message, in the order it happens.
public enum EffectStep: Sendable, Equatable {
    /// lnrr sends this message of its own (a rule's `inject`) in `direction`.
    case inject(InjectedMessage)
    /// Everything after this step in the message's direction waits this long (a rule's `delay`).
    case delay(milliseconds: Int)
    /// The matched message reaches its receiver: the sender's bytes or a replacement, `copies`
    /// times. Dropped messages have `delivery == .none` (and are still recorded).
    case deliver(RuleEffects.Delivery, copies: Int)
    /// The connection ends (`before`, `after`, `after-receive`) or is wedged (`blackhole`, `stall`)
    /// once the steps before it are through. `drop` never appears here: it only drops.
    case disconnect(DisconnectKind)
    /// A network fault takes effect on the connection toward the message's receiver, once the
    /// steps before it are through; `rule` names the rule it comes from.
    case fault(Fault, rule: String)
}

/// What the phase tracker and the rules made of one message: the one description of rule effects
/// that the proxy's relay core, live replay and offline replay all carry out.
public struct EffectPlan: Sendable, Equatable {
    /// The matched message's phases (before the rules: rules match on them).
    public var observation: PhaseObservation
    /// What the rules decided; `.none` when no rule fired.
    public var effects: RuleEffects
    /// Whether no rule fired: deliver the message once, as it came. Stored, so the per-message
    /// path tests one flag instead of comparing the effects.
    public let isPlain: Bool

    public init(observation: PhaseObservation, effects: RuleEffects) {
        self.observation = observation
        self.effects = effects
        self.isPlain = effects.isNone
    }

    /// A message no rule acted on.
    @inlinable
    public init(plain observation: PhaseObservation) {
        self.observation = observation
        self.effects = RuleEffects()
        self.isPlain = true
    }

    /// The steps, in order: injections before, the delay, the delivery, injections after, the
    /// faults, the disconnect. Callers on the per-message path check `isPlain` first (no array is built then).
    public var steps: [EffectStep] {
        var steps: [EffectStep] = effects.injectBefore.map { .inject($0) }
        if effects.delayMilliseconds > 0 { steps.append(.delay(milliseconds: effects.delayMilliseconds)) }
        steps.append(.deliver(effects.delivery, copies: effects.delivery == .none ? 0 : effects.copies))
        steps += effects.injectAfter.map { .inject($0) }
        steps += zip(effects.faults, effects.faultRules).map { .fault($0, rule: $1) }
        if let kind = effects.disconnect, kind != .drop { steps.append(.disconnect(kind)) }
        return steps
    }
}

/// The phase tracker and the rule engine one session's messages pass through, in order. The
/// proxy's relay core, `ReplayRunner` and `OfflineReplay` each keep one and ask it for an
/// `EffectPlan` per message, so a rule acts the same way in `record`, `replay` and
/// `replay --offline`.
///
/// Phases follow what each receiver sees (docs/phases.md): the matched message is observed as it
/// arrives (rules match on its phases), and every message lnrr injects is observed as well, in
/// plan order, when it goes a way this stage can deliver.
public struct RuleStage {
    public private(set) var phases = PhaseTracker()
    public private(set) var engine: RuleEngine?
    /// Node ids for `node:` matches.
    public var nodeA: String?
    public var nodeB: String?
    /// Directions lnrr can send injected messages in (replay plays one side only).
    public let injectable: Set<Direction>

    public init(rules: RuleSet?, nodeA: String? = nil, nodeB: String? = nil,
                injectable: Set<Direction> = [.aToB, .bToA]) {
        engine = rules.map { RuleEngine(rules: $0) }
        self.nodeA = nodeA
        self.nodeB = nodeB
        self.injectable = injectable
    }

    /// Replaces the rules (their counters start again).
    public mutating func setRules(_ rules: RuleSet?) {
        engine = rules.map { RuleEngine(rules: $0) }
    }

    /// Observes `message` (type + payload) sent in `direction` and decides what the rules do to it.
    public mutating func process(_ message: UnsafeRawBufferPointer, direction: Direction) -> EffectPlan {
        let observation = phases.observe(message, direction: direction)
        guard engine != nil, let type = WireMessage.type(message), engine!.mayApply(to: type) else {
            return EffectPlan(plain: observation)
        }
        let context = MessageContext(
            direction: direction, bytes: Array(message), phaseBefore: observation.before, phaseAfter: observation.after,
            changes: observation.changes.map { ($0.from, $0.to) }, nodeA: nodeA, nodeB: nodeB)
        let effects = engine!.decide(context)
        for injected in effects.injectBefore + effects.injectAfter where injectable.contains(injected.direction) {
            _ = phases.observe(injected.message, direction: injected.direction)
        }
        return EffectPlan(observation: observation, effects: effects)
    }

    public mutating func process(_ message: [UInt8], direction: Direction) -> EffectPlan {
        message.withUnsafeBytes { process($0, direction: direction) }
    }

    /// Observes a message without asking the rules: one lnrr sends from outside the rules (the
    /// control socket; its receiver sees it, so its phases do too), or one a halted connection
    /// swallows.
    @discardableResult
    public mutating func observe(_ message: UnsafeRawBufferPointer, direction: Direction) -> PhaseObservation {
        phases.observe(message, direction: direction)
    }
}

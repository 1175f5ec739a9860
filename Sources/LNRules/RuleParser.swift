import Foundation
import LNWire
import Yams

/// A problem in a rule file, at a position.
public struct RuleDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var file: String
    public var line: Int
    public var column: Int
    public var severity: Severity
    public var message: String

    /// `FILE:LINE:COLUMN: error: message`.
    public var description: String { "\(file):\(line):\(column): \(severity.rawValue): \(message)" }
}

/// Reads rule files (YAML) into a `RuleSet`, collecting every problem with its position.
public struct RuleParser {
    let file: String
    let yaml: String
    var diagnostics: [RuleDiagnostic] = []

    static let ruleKeys = ["name", "match", "action"]
    static let matchKeys = ["dir", "type", "custom", "parity", "phase", "on", "nth", "every", "count", "after", "node",
                            "payload_prefix", "payload_regex", "fields", "probability", "at"]
    /// The faults an `at: connect` rule may take: those that act on a connection, not on a message.
    static let connectFaultNames = ["bandwidth", "slicer", "reset", "slow-close", "timeout", "limit-data"]
    static let actionNames = ["forward", "drop", "delay", "inject", "replace", "duplicate", "disconnect", "mark",
                              "latency", "bandwidth", "slicer", "reset", "slow-close", "timeout", "limit-data"]

    /// Parses `yaml`; the rule set is nil when there are errors (warnings alone keep it).
    public static func parse(yaml: String, file: String) -> (RuleSet?, [RuleDiagnostic]) {
        var parser = RuleParser(file: file, yaml: yaml)
        let rules = parser.parseFile()
        let failed = parser.diagnostics.contains { $0.severity == .error }
        return (failed ? nil : rules, parser.diagnostics)
    }

    /// Reads and parses a rule file.
    public static func load(path: String) throws -> (RuleSet?, [RuleDiagnostic]) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw RuleFileError.unreadable(path, error.localizedDescription)
        }
        return parse(yaml: text, file: path)
    }

    // MARK: -

    mutating func error(_ node: Node?, _ message: String) {
        diagnostics.append(RuleDiagnostic(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, severity: .error, message: message))
    }

    mutating func warning(_ node: Node?, _ message: String) {
        diagnostics.append(RuleDiagnostic(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, severity: .warning, message: message))
    }

    static func suggest(_ word: String, from options: [String]) -> String {
        let best = Suggestions.nearest(word, in: options)
        return best.isEmpty ? "" : " (did you mean \(best.joined(separator: ", "))?)"
    }

    mutating func parseFile() -> RuleSet {
        if let key = YAMLKeyScreen.firstComplexKey(in: yaml) {
            diagnostics.append(RuleDiagnostic(file: file, line: key.line, column: key.column, severity: .error,
                                              message: "a key here is \(key.what); rule files use plain words as keys (`name:`, `match:`, `type:` ...)"))
            return RuleSet()
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let YamlError.scanner(_, problem, mark, _), let YamlError.parser(_, problem, mark, _), let YamlError.composer(_, problem, mark, _) {
            diagnostics.append(RuleDiagnostic(file: file, line: mark.line, column: mark.column, severity: .error, message: "YAML: \(problem)"))
            return RuleSet()
        } catch {
            diagnostics.append(RuleDiagnostic(file: file, line: 1, column: 1, severity: .error, message: "YAML: \(error)"))
            return RuleSet()
        }
        guard let root, case .mapping(let top) = root else {
            error(root, "a rule file is a mapping with a `rules:` list (and optionally `seed:`)")
            return RuleSet()
        }
        var set = RuleSet()
        var rulesNode: Node?
        for (key, value) in top {
            switch key.string {
            case "rules": rulesNode = value
            case "seed":
                if let seed = value.wholeNumber, seed >= 0 { set.seed = UInt64(seed) } else { error(value, "seed must be a non-negative integer") }
            default:
                error(key, "unknown key '\(key.string ?? "")'" + Self.suggest(key.string ?? "", from: ["rules", "seed"]))
            }
        }
        guard let rulesNode, case .sequence(let list) = rulesNode else {
            error(rulesNode ?? root, "`rules:` must be a list of rules")
            return set
        }
        // Every rule's name with where it is given (the `name:` value, or the rule for a default
        // name), also for rules that fail to parse: a clash is reported even next to other errors.
        var names: [String: Node] = [:]
        var afterNodes: [(String, Node)] = []
        for (index, node) in list.enumerated() {
            let parsed = parseRule(node, index: index)
            let (name, nameNode) = Self.ruleName(node, index: index)
            if let first = names[name] {
                error(nameNode, "two rules are named '\(name)': this one and the one at line \(Self.position(first)); "
                      + "give each rule its own name (`after:`, `delrule` and the recording refer to rules by name)")
            } else {
                names[name] = nameNode
            }
            if let (rule, afterNode) = parsed {
                set.rules.append(rule)
                if let after = rule.match.after, let afterNode { afterNodes.append((after, afterNode)) }
            }
        }
        for (after, node) in afterNodes where names[after] == nil {
            error(node, "`after:` names '\(after)', which is not a rule here" + Self.suggest(after, from: Array(names.keys)))
        }
        return set
    }

    /// The name a rule goes by (its `name:`, else `ruleN` by position) and the node to point at.
    static func ruleName(_ node: Node, index: Int) -> (String, Node) {
        if case .mapping = node, let value = node["name"], let text = value.string, !text.isEmpty {
            return (text, value)
        }
        return ("rule\(index + 1)", node)
    }

    /// `LINE:COLUMN` of a node, as diagnostics print positions.
    static func position(_ node: Node) -> String {
        "\(node.mark?.line ?? 1):\(node.mark?.column ?? 1)"
    }

    mutating func parseRule(_ node: Node, index: Int) -> (Rule, Node?)? {
        guard case .mapping(let mapping) = node else {
            error(node, "a rule is a mapping with `match:` and `action:` (and optionally `name:`)")
            return nil
        }
        var name = "rule\(index + 1)"
        var match = Match()
        var actions: [RuleAction] = [.forward]
        var ok = true
        var sawAction = false
        var afterNode: Node?
        // `match:` first, whatever the order of the keys: `replace: {fields: ...}` is checked against
        // the fields of the matched types.
        let ordered = mapping.filter { $0.key.string == "match" } + mapping.filter { $0.key.string != "match" }
        for (key, value) in ordered {
            switch key.string {
            case "name":
                guard let text = value.string, !text.isEmpty else { error(value, "name must be a string"); ok = false; continue }
                name = text
            case "match":
                guard let parsed = parseMatch(value) else { ok = false; continue }
                match = parsed.match
                afterNode = parsed.afterNode
            case "action":
                sawAction = true
                guard let parsed = parseActions(value, match: match) else { ok = false; continue }
                actions = parsed
            default:
                error(key, "unknown key '\(key.string ?? "")' in a rule" + Self.suggest(key.string ?? "", from: Self.ruleKeys))
                ok = false
            }
        }
        if !sawAction { warning(node, "rule '\(name)' has no `action:`; it forwards (the default)") }
        return ok ? (Rule(name: name, match: match, actions: actions, line: node.mark?.line ?? 0), afterNode) : nil
    }

    // MARK: Match

    mutating func parseMatch(_ node: Node) -> (match: Match, afterNode: Node?)? {
        guard case .mapping(let mapping) = node else {
            error(node, "`match:` is a mapping of conditions, e.g. {type: ping, dir: a2b}")
            return nil
        }
        var match = Match()
        var ok = true
        var afterNode: Node?
        // `fields` last, whatever the order of the keys: its names are checked against `type`.
        let ordered = mapping.filter { $0.key.string != "fields" } + mapping.filter { $0.key.string == "fields" }
        for (key, value) in ordered {
            let k = key.string ?? ""
            switch k {
            case "dir":
                let text = value.string ?? ""
                if text.lowercased() == "any" {
                    match.direction = nil
                } else if let direction = Direction(parsing: text) {
                    match.direction = direction
                } else {
                    error(value, "dir must be \(Direction.acceptedForms) or any"); ok = false
                }
            case "type":
                guard let ranges = parseTypes(value) else { ok = false; continue }
                match.types = (match.types ?? []) + ranges
            case "custom":
                if value.bool == true { match.types = (match.types ?? []) + [32768...65535] }
                else if value.bool == nil { error(value, "custom must be true or false"); ok = false }
            case "parity":
                guard let parity = value.string.flatMap(Match.Parity.init(rawValue:)) else { error(value, "parity must be odd or even"); ok = false; continue }
                match.parity = parity
            case "phase":
                let items = value.sequenceOrSelf
                var phases = Set<ChannelPhase>()
                for item in items {
                    guard let phase = parsePhase(item) else { ok = false; continue }
                    phases.insert(phase)
                }
                match.phases = phases
            case "on":
                let text = value.string ?? ""
                let parts = text.components(separatedBy: "->").map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { error(value, "on: must be a phase change like 'opening -> channel'"); ok = false; continue }
                guard let from = parsePhase(value, text: parts[0]), let to = parsePhase(value, text: parts[1]) else { ok = false; continue }
                match.phaseChange = (from, to)
            case "nth", "every", "count":
                guard let n = value.wholeNumber, n >= 1 else { error(value, "\(k) must be a whole number of at least 1"); ok = false; continue }
                if k == "nth" { match.nth = n } else if k == "every" { match.every = n } else { match.count = n }
            case "after":
                guard let text = value.string else { error(value, "after must name a rule"); ok = false; continue }
                match.after = text
                afterNode = value
            case "node":
                guard case .mapping(let nodes) = value else { error(value, "node is {a: NODEID} and/or {b: NODEID}"); ok = false; continue }
                for (side, id) in nodes {
                    guard let hex = id.string?.lowercased(), hex.count == 66, HexString.decode(hex) != nil else {
                        error(id, "a node id is 66 hex characters"); ok = false; continue
                    }
                    switch side.string {
                    case "a": match.nodeA = hex
                    case "b": match.nodeB = hex
                    default: error(side, "node keys are a and b"); ok = false
                    }
                }
            case "payload_prefix":
                guard let bytes = value.string.flatMap(HexString.decode) else { error(value, "payload_prefix must be hex"); ok = false; continue }
                match.payloadPrefix = bytes
            case "payload_regex":
                guard let text = value.string else { error(value, "payload_regex must be a string"); ok = false; continue }
                do { _ = try BoundedRegex(text) } catch {
                    self.error(value, "payload_regex: \(error) (docs/rules.md lists the syntax, matched in linear time)"); ok = false; continue
                }
                match.payloadRegex = text
            case "fields":
                guard case .mapping(let fields) = value else { error(value, "fields is a mapping of field names to values"); ok = false; continue }
                var wanted: [String: String] = [:]
                let known = knownFieldNames(match.types)
                for (fieldKey, fieldValue) in fields {
                    let fieldName = fieldKey.string ?? ""
                    if let known, !known.names.contains(fieldName) {
                        error(fieldKey, unknownFieldMessage(fieldName, known))
                        ok = false
                    }
                    wanted[fieldName] = (fieldValue.string ?? "").lowercased()
                }
                match.fields = wanted
            case "at":
                guard value.string == "connect" else {
                    error(value, "at must be connect (the rule's faults act on each new connection from its first byte, before the handshake)"
                          + Self.suggest(value.string ?? "", from: ["connect"]))
                    ok = false; continue
                }
                match.atConnect = true
            case "probability":
                guard let p = value.float, p >= 0, p <= 1 else { error(value, "probability must be a number from 0 to 1"); ok = false; continue }
                match.probability = p
            default:
                error(key, "unknown condition '\(k)'" + Self.suggest(k, from: Self.matchKeys))
                ok = false
            }
        }
        if match.atConnect {
            // A connect rule acts before any message: only the side it acts toward narrows it.
            for (key, _) in mapping where key.string != "at" && key.string != "dir" {
                error(key, "`at: connect` takes no `\(key.string ?? "")`: the rule acts when a connection starts, before any message; "
                      + "only `dir:` (the side it acts toward) narrows it. Remove `at: connect` to act on matching messages instead")
                ok = false
            }
        }
        return ok ? (match, afterNode) : nil
    }

    /// The top-level field names a `fields:` condition or replacement may use, with the messages
    /// they come from: those of the BOLT messages `type` matches, or of every BOLT message when
    /// there is no `type`. Nil when the matched types include one lnrr cannot decode (custom or
    /// unknown types), whose fields it cannot know.
    func knownFieldNames(_ types: [ClosedRange<UInt16>]?) -> (names: Set<String>, messages: [String])? {
        let specs: [MessageSpec]
        if let types, !types.isEmpty {
            var matched: [MessageSpec] = []
            for range in types {
                if range.count == 1 {
                    guard let spec = MessageCatalogue.spec(of: range.lowerBound) else { return nil }
                    matched.append(spec)
                } else {
                    guard range.upperBound < 32768 else { return nil }
                    matched += MessageCatalogue.messages.filter { range.contains($0.type) }
                }
            }
            specs = matched
        } else {
            specs = MessageCatalogue.messages
        }
        guard !specs.isEmpty else { return nil }
        return (Set(specs.flatMap { $0.fields.map(\.name) }), specs.map(\.name))
    }

    /// "no message matched by `type` has a field 'x'" with the nearest names, or the names there are.
    func unknownFieldMessage(_ field: String, _ known: (names: Set<String>, messages: [String])) -> String {
        let scope = known.messages.count == MessageCatalogue.messages.count ? "no BOLT message" : "no message matched by `type` (\(known.messages.prefix(4).joined(separator: ", "))\(known.messages.count > 4 ? ", ..." : ""))"
        let suggestion = Self.suggest(field, from: known.names.sorted())
        if !suggestion.isEmpty { return "\(scope) has a field '\(field)'" + suggestion }
        if known.names.count <= 12 {
            return "\(scope) has a field '\(field)'; its fields are \(known.names.sorted().joined(separator: ", "))"
        }
        return "\(scope) has a field '\(field)'; `lnrr decode` prints a message's field names"
    }

    mutating func parsePhase(_ node: Node, text: String? = nil) -> ChannelPhase? {
        let raw = (text ?? node.string ?? "").trimmingCharacters(in: .whitespaces)
        if let phase = ChannelPhase(rawValue: raw) { return phase }
        error(node, "'\(raw)' is not a phase; phases are \(ChannelPhase.allCases.map(\.rawValue).joined(separator: ", "))"
              + Self.suggest(raw, from: ChannelPhase.allCases.map(\.rawValue)))
        return nil
    }

    mutating func parseTypes(_ node: Node) -> [ClosedRange<UInt16>]? {
        var ranges: [ClosedRange<UInt16>] = []
        for item in node.sequenceOrSelf {
            let text = (item.string ?? "").trimmingCharacters(in: .whitespaces)
            if text == "custom" { ranges.append(32768...65535); continue }
            if let n = UInt16(text) { ranges.append(n...n); continue }
            if Self.isInteger(text) {
                error(item, "type \(text) is out of range: message types are 0-65535 (two bytes)")
                return nil
            }
            let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if bounds.count == 2, Self.isInteger(bounds[0]), Self.isInteger(bounds[1]) {
                guard let low = UInt16(bounds[0]), let high = UInt16(bounds[1]) else {
                    error(item, "range \(text) is out of range: message types are 0-65535 (two bytes)")
                    return nil
                }
                guard low <= high else {
                    error(item, "range \(text) is reversed: a range is LOW-HIGH, here \(high)-\(low)")
                    return nil
                }
                ranges.append(low...high)
                continue
            }
            if let type = MessageCatalogue.type(named: text) { ranges.append(type...type); continue }
            let suggestions = MessageCatalogue.suggestions(for: text)
            error(item, "unknown message type '\(text)'" + (suggestions.isEmpty ? "" : " (did you mean \(suggestions.joined(separator: ", "))?)"))
            return nil
        }
        return ranges
    }

    /// Digits only (a sign allowed): a number, even one too big or negative for a message type.
    static func isInteger(_ text: String) -> Bool {
        let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    // MARK: Action

    /// One action, or a list of them (`action: [{inject: ...}, {inject: ...}]`), all applied in order.
    mutating func parseActions(_ node: Node, match: Match) -> [RuleAction]? {
        guard case .sequence(let items) = node else {
            guard let action = parseAction(node, match: match), checkAtConnect(action, node, match) else { return nil }
            return [action]
        }
        guard !items.isEmpty else { error(node, "an action list needs at least one action"); return nil }
        var actions: [RuleAction] = []
        var ok = true
        var said: [String] = []
        // One rule says what happens to the message once: `[drop, duplicate]` contradicts itself
        // (a replacement may be duplicated).
        let delivery: Set<String> = ["forward", "drop", "replace", "duplicate"]
        for item in items {
            guard let action = parseAction(item, match: match) else { ok = false; continue }
            if !checkAtConnect(action, item, match) { ok = false; continue }
            let word = RuleEngine.word(action)
            if action.decides {
                if let previous = said.first(where: { $0 == word || (delivery.contains($0) && delivery.contains(word)
                                                                     && Set([$0, word]) != ["replace", "duplicate"]) }) {
                    error(item, "'\(word)' conflicts with '\(previous)' earlier in this rule's actions: a rule says once what happens to the message")
                    ok = false
                }
                said.append(word)
            }
            actions.append(action)
        }
        return ok ? actions : nil
    }

    /// An `at: connect` rule acts on the connection before any message: its actions are faults
    /// (not `latency`, which delays messages). False, with the error, for any other action.
    mutating func checkAtConnect(_ action: RuleAction, _ node: Node, _ match: Match) -> Bool {
        guard match.atConnect else { return true }
        switch action {
        case .fault:
            return true
        case .latency:
            error(node, "latency delays messages, and an `at: connect` rule acts before any: remove `at: connect` to delay every "
                  + "message that way (e.g. `match: {dir: a2b}`)")
        default:
            let word = RuleEngine.word(action)
            error(node, "'\(word)' acts on a message, and an `at: connect` rule acts before any: its actions are faults "
                  + "(\(Self.connectFaultNames.joined(separator: ", "))); remove `at: connect` to \(word) matching messages")
        }
        return false
    }

    mutating func parseAction(_ node: Node, match: Match) -> RuleAction? {
        if let word = node.string {
            switch word {
            case "forward": return .forward
            case "drop": return .drop
            case "duplicate": return .duplicate
            case "reset": return .fault(.reset)
            default:
                error(node, "unknown action '\(word)'" + Self.suggest(word, from: Self.actionNames))
                return nil
            }
        }
        guard case .mapping(let mapping) = node, mapping.count == 1, let (key, value) = mapping.first(where: { _ in true }) else {
            error(node, "an action is one of \(Self.actionNames.joined(separator: ", ")), e.g. `drop` or `{delay: 100}`")
            return nil
        }
        let k = key.string ?? ""
        switch k {
        case "forward", "drop", "duplicate":
            return k == "forward" ? .forward : k == "drop" ? .drop : .duplicate
        case "delay":
            guard let ms = value.wholeNumber, ms >= 0 else { error(value, "delay is a number of milliseconds"); return nil }
            return .delay(milliseconds: ms)
        case "mark":
            return .mark(value.string ?? "")
        case "reset":
            return .fault(.reset)
        case "latency":
            return parseLatency(value)
        case "bandwidth", "slow-close", "timeout", "limit-data":
            let unit = k == "bandwidth" ? "bytes per second" : k == "limit-data" ? "bytes" : "milliseconds"
            guard let n = value.wholeNumber, n >= (k == "bandwidth" || k == "limit-data" ? 1 : 0) else {
                error(value, "\(k) is a number of \(unit)\(k == "bandwidth" || k == "limit-data" ? " (at least 1)" : ""), e.g. `{\(k): 1000}`")
                return nil
            }
            switch k {
            case "bandwidth": return .fault(.bandwidth(bytesPerSecond: n))
            case "slow-close": return .fault(.slowClose(milliseconds: n))
            case "timeout": return .fault(.timeout(milliseconds: n))
            default: return .fault(.limitData(bytes: n))
            }
        case "slicer":
            let keys = ["size", "variation", "gap"]
            guard case .mapping(let m) = value else {
                error(value, "slicer is {size: BYTES, variation: BYTES, gap: MS}, e.g. `{slicer: {size: 7, gap: 1}}`"); return nil
            }
            for (key, _) in m where !keys.contains(key.string ?? "") {
                error(key, "unknown key '\(key.string ?? "")' in slicer" + Self.suggest(key.string ?? "", from: keys))
                return nil
            }
            guard let size = value["size"]?.wholeNumber, size >= 1 else { error(value["size"] ?? value, "slicer size is a number of bytes, at least 1"); return nil }
            let gap = value["gap"].map { Double($0.string ?? "") } ?? 0
            guard let gap, gap >= 0, gap <= 60_000 else { error(value["gap"] ?? value, "slicer gap is milliseconds between segments (0-60000; fractions allowed)"); return nil }
            var variation = 0
            if let node = value["variation"] {
                guard let v = node.wholeNumber, v >= 0 else {
                    error(node, "slicer variation is a number of bytes, 0 or more: each segment is size ± variation bytes"); return nil
                }
                guard v < size else {
                    error(node, "slicer variation \(v) must be less than size \(size): each segment is size ± variation bytes, "
                          + "at least 1 (here at most \(size - 1))")
                    return nil
                }
                variation = v
            }
            return .fault(.slicer(bytes: size, gapMicroseconds: Int((gap * 1000).rounded()), variation: variation))
        case "disconnect":
            let text = value.string ?? ""
            if let kind = DisconnectKind(rawValue: text) ?? (text.count == 1 ? DisconnectKind(symbol: text.first!) : nil) {
                return .disconnect(kind)
            }
            error(value, "disconnect is one of \(DisconnectKind.allCases.map { "\($0.rawValue) (\($0.symbol))" }.joined(separator: ", "))")
            return nil
        case "inject":
            guard case .mapping = value else { error(value, "inject is {hex: ...} or {name: ..., fields: {...}}, with optional dir and when"); return nil }
            guard let message = parseMessage(value, allowFieldsOnly: false, context: "inject") else { return nil }
            var direction: Direction?
            if let dirNode = value["dir"] {
                guard let d = dirNode.string.flatMap({ Direction(parsing: $0) }) else { error(dirNode, "dir must be \(Direction.acceptedForms)"); return nil }
                direction = d
            }
            var before = false
            if let whenNode = value["when"] {
                switch whenNode.string {
                case "before": before = true
                case "after": before = false
                default: error(whenNode, "when must be before or after"); return nil
                }
            }
            if case .message(let bytes) = message { warnIfRisky(bytes, node: value) }
            guard case .message(let bytes) = message else { return nil }
            return .inject(Injection(message: bytes, direction: direction, before: before))
        case "replace":
            guard let replacement = parseMessage(value, allowFieldsOnly: true, context: "replace") else { return nil }
            if case .fields(let pairs) = replacement, let known = knownFieldNames(match.types) {
                for (field, _) in pairs where !known.names.contains(field) {
                    error(value["fields"] ?? value, unknownFieldMessage(field, known))
                    return nil
                }
            }
            return .replace(replacement)
        default:
            error(key, "unknown action '\(k)'" + Self.suggest(k, from: Self.actionNames))
            return nil
        }
    }

    /// `{latency: MS}` or `{latency: {ms: MS, jitter: MS, distribution: uniform|normal}}`.
    mutating func parseLatency(_ value: Node) -> RuleAction? {
        let keys = ["ms", "jitter", "distribution"]
        func number(_ node: Node?, _ what: String) -> Double?? {
            guard let node else { return .some(nil) }
            guard let d = Double(node.string ?? ""), d >= 0, d <= 3_600_000 else {
                error(node, "latency \(what) is milliseconds, 0 or more (fractions allowed)")
                return nil
            }
            return .some(d)
        }
        if value.string != nil {
            guard let ms = number(value, "") ?? nil else { return nil }
            return .latency(Latency(milliseconds: ms))
        }
        guard case .mapping(let m) = value else {
            error(value, "latency is MS or {ms: MS, jitter: MS, distribution: uniform|normal}"); return nil
        }
        for (key, _) in m where !keys.contains(key.string ?? "") {
            error(key, "unknown key '\(key.string ?? "")' in latency" + Self.suggest(key.string ?? "", from: keys))
            return nil
        }
        guard let msNode = value["ms"] else { error(value, "latency needs `ms` (the mean, in milliseconds)"); return nil }
        guard let ms = number(msNode, "ms") ?? nil, let jitter = number(value["jitter"], "jitter") else { return nil }
        var distribution = Latency.Distribution.uniform
        if let d = value["distribution"] {
            guard let parsed = d.string.flatMap(Latency.Distribution.init(rawValue:)) else {
                error(d, "distribution is \(Latency.Distribution.allCases.map(\.rawValue).joined(separator: " or "))"); return nil
            }
            distribution = parsed
        }
        return .latency(Latency(milliseconds: ms, jitter: jitter ?? 0, distribution: distribution))
    }

    /// `{hex: ...}`, `{name: ..., fields: {...}}` or (for replace) `{fields: {...}}`.
    mutating func parseMessage(_ node: Node, allowFieldsOnly: Bool, context: String) -> Replacement? {
        let allowed = ["hex", "name", "fields", "dir", "when"]
        if case .mapping(let mapping) = node {
            for (key, _) in mapping where !allowed.contains(key.string ?? "") {
                error(key, "unknown key '\(key.string ?? "")' in \(context)" + Self.suggest(key.string ?? "", from: allowed))
                return nil
            }
        }
        if let hexNode = node["hex"] {
            guard let bytes = hexNode.string.flatMap(HexString.decode), bytes.count >= 2 else {
                error(hexNode, "hex must be the message's 2-byte type and payload in hex (e.g. 8001cafe)")
                return nil
            }
            return .message(bytes)
        }
        let fieldsJSON: JSONValue
        if let fieldsNode = node["fields"] {
            guard let json = Self.json(fieldsNode) else { error(fieldsNode, "fields must be a mapping"); return nil }
            fieldsJSON = json
        } else {
            fieldsJSON = .object([])
        }
        if let nameNode = node["name"] {
            let name = nameNode.string ?? ""
            guard MessageCatalogue.type(named: name) != nil else {
                let s = MessageCatalogue.suggestions(for: name)
                error(nameNode, "unknown message '\(name)'" + (s.isEmpty ? "" : " (did you mean \(s.joined(separator: ", "))?)"))
                return nil
            }
            do {
                return .message(try WireCodec.encode(name: name, fields: fieldsJSON))
            } catch {
                self.error(node["fields"] ?? nameNode, "cannot build \(name): \(error)")
                return nil
            }
        }
        if allowFieldsOnly, node["fields"] != nil, case .object(let pairs) = fieldsJSON {
            return .fields(pairs)
        }
        error(node, allowFieldsOnly ? "replace needs hex, name + fields, or fields" : "\(context) needs hex, or name + fields")
        return nil
    }

    /// Injecting even unknown types or real protocol messages is allowed (this is a testing tool),
    /// but the peer's reaction should not surprise anyone.
    mutating func warnIfRisky(_ message: [UInt8], node: Node) {
        guard let type = WireMessage.type(message) else { return }
        switch MessageCatalogue.kind(of: type) {
        case .known:
            warning(node, "injects \(MessageCatalogue.displayName(of: type)) (type \(type)), a BOLT message: the peer will process it as real protocol")
        case .unknownEven:
            warning(node, "injects unknown even type \(type): BOLT 1 requires the peer to fail the connection")
        case .custom where type % 2 == 0:
            warning(node, "injects even custom type \(type): a peer that does not understand it must fail the connection (BOLT 1)")
        default:
            break
        }
    }

    /// YAML to the codec's JSON (scalars become integers when they are integers, else strings).
    static func json(_ node: Node) -> JSONValue? {
        switch node {
        case .scalar(let scalar):
            if let i = Int(scalar.string), !scalar.string.hasPrefix("0") || scalar.string == "0" { return .integer(String(i)) }
            if let u = UInt64(scalar.string), !scalar.string.hasPrefix("0") { return .integer(String(u)) }
            return .string(scalar.string)
        case .mapping(let mapping):
            var pairs: [(String, JSONValue)] = []
            for (key, value) in mapping {
                guard let v = json(value) else { return nil }
                pairs.append((key.string ?? "", v))
            }
            return .object(pairs)
        case .sequence(let sequence):
            var values: [JSONValue] = []
            for item in sequence {
                guard let v = json(item) else { return nil }
                values.append(v)
            }
            return .array(values)
        case .alias:
            return nil
        }
    }
}

extension Node {
    /// A sequence's items, or the node itself.
    var sequenceOrSelf: [Node] {
        if case .sequence(let s) = self { return Array(s) }
        return [self]
    }
}

/// A rule file that cannot be read at all.
public enum RuleFileError: Error, CustomStringConvertible {
    case unreadable(String, String)

    public var description: String {
        switch self {
        case .unreadable(let path, let why): return "cannot read rule file \(path): \(why)"
        }
    }
}

extension Node {
    /// A whole number written as a plain scalar: decimal with an optional sign, `_` between digits
    /// allowed (`1_000_000`), or hexadecimal after `0x`; nil for anything else, including a number
    /// too large for `Int`.
    ///
    /// Read here rather than through Yams' `Node.int`, which also accepts YAML 1.1's base-60 form
    /// (`1:30:00`) and traps when such a value overflows (`seed: 1:2:3:4:5:6:7:8:9:10:11:12:13`
    /// took `rules check` down; found by the `rules` fuzzer).
    var wholeNumber: Int? {
        guard case .scalar(let scalar) = self else { return nil }
        var text = Substring(scalar.string)
        var negative = false
        if let sign = text.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            text = text.dropFirst()
        }
        var radix = 10
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            radix = 16
            text = text.dropFirst(2)
        }
        // Underscores only between digits, as YAML writes them.
        guard !text.isEmpty, text.first != "_", text.last != "_", !text.contains("__") else { return nil }
        guard let magnitude = Int(text.filter { $0 != "_" }, radix: radix) else { return nil }
        return negative ? -magnitude : magnitude
    }
}

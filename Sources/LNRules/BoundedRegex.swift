/// The `payload_regex` matcher: regular expressions compiled to a Thompson NFA and run as a Pike VM,
/// so a match costs at most (pattern size × text length) steps whatever the pattern. A backtracking
/// engine (NSRegularExpression) takes exponential time on patterns like `(0*)*1`, which stalled an
/// event loop for minutes (issue #14); this one cannot.
///
/// The syntax is what an NFA can do: literals, `.`, classes `[a-f0-9]` / `[^...]`, `\d \w \s` and
/// their negations, `\xHH`, groups `(...)` / `(?:...)` / `(?<name>...)`, `|`, the quantifiers
/// `* + ? {n} {n,} {n,m}` (lazy `?` forms accepted: they find the same matches), and the anchors `^`
/// `$` (start and end of the text). Backreferences, lookaround, atomic groups, possessive quantifiers
/// and inline flags cannot be matched in linear time and are refused with the position of the
/// construct. The text matched is the payload's lowercase hex, fed to the matcher without building it.
public struct BoundedRegex: Sendable {
    /// The pattern as written.
    public let pattern: String
    private let program: [Instruction]
    private let sets: [ByteSet]

    /// The largest program a pattern may compile to (counted repetitions are expanded).
    public static let maxInstructions = 20_000
    /// The largest count in `{n,m}`.
    public static let maxRepeat = 1_000

    /// Why a pattern was refused: `offset` is the 0-based character position in the pattern.
    public struct SyntaxError: Error, Equatable, CustomStringConvertible, Sendable {
        public var offset: Int
        public var message: String
        public var description: String { "at character \(offset + 1) of the pattern: \(message)" }
    }

    /// Compiles `pattern`; throws `SyntaxError` for what it cannot match in linear time or cannot parse.
    public init(_ pattern: String) throws {
        self.pattern = pattern
        var parser = Parser(Array(pattern.unicodeScalars))
        let node = try parser.parse()
        var compiler = Compiler()
        try compiler.emit(node)
        compiler.program.append(.match)
        guard compiler.program.count <= Self.maxInstructions else {
            throw SyntaxError(offset: 0, message: "the pattern is too large once its repetitions are expanded (\(compiler.program.count) states, at most \(Self.maxInstructions))")
        }
        program = compiler.program
        sets = compiler.sets
    }

    /// Whether the lowercase hex of `bytes` contains a match. The hex text is never built: each
    /// character is computed from its byte as the matcher reaches it.
    public func matchesHex<C: RandomAccessCollection>(of bytes: C) -> Bool where C.Element == UInt8 {
        let start = bytes.startIndex
        return run(length: bytes.count * 2) { position in
            let byte = bytes[bytes.index(start, offsetBy: position >> 1)]
            let nibble = position & 1 == 0 ? byte >> 4 : byte & 0x0f
            return nibble < 10 ? 0x30 + nibble : 0x57 + nibble  // '0'-'9', 'a'-'f'
        }
    }

    /// Whether `text` (bytes, e.g. ASCII) contains a match. Linear in `text.count` for a given pattern.
    public func matches(_ text: [UInt8]) -> Bool {
        run(length: text.count) { text[$0] }
    }

    @inline(__always)
    private func run(length: Int, _ byteAt: (Int) -> UInt8) -> Bool {
        let count = program.count
        var current = ThreadList(capacity: count)
        var next = ThreadList(capacity: count)
        var stack: [Int] = []
        stack.reserveCapacity(count)
        // A thread starts at every position (an unanchored search), so one is added per step; each
        // step visits each program state at most once: O(states) per input byte.
        for position in 0...length {
            if add(0, at: position, length: length, to: &current, stack: &stack) { return true }
            if position == length { break }
            let byte = byteAt(position)
            next.clear()
            for pc in current.members {
                if case .byte(let set) = program[pc], sets[set].contains(byte) {
                    if add(pc + 1, at: position + 1, length: length, to: &next, stack: &stack) { return true }
                }
            }
            swap(&current, &next)
        }
        return false
    }

    /// Adds the thread at `pc` and everything reachable without consuming input; true on a match.
    private func add(_ start: Int, at position: Int, length: Int, to list: inout ThreadList, stack: inout [Int]) -> Bool {
        stack.append(start)
        while let pc = stack.popLast() {
            guard list.insert(pc) else { continue }
            switch program[pc] {
            case .match:
                stack.removeAll(keepingCapacity: true)
                return true
            case .jump(let target):
                stack.append(target)
            case .split(let first, let second):
                stack.append(second)
                stack.append(first)
            case .assertStart:
                if position == 0 { stack.append(pc + 1) }
            case .assertEnd:
                if position == length { stack.append(pc + 1) }
            case .byte:
                break  // waits for the next input byte
            }
        }
        return false
    }

    enum Instruction: Sendable {
        case byte(Int)  // index into `sets`
        case split(Int, Int)
        case jump(Int)
        case assertStart
        case assertEnd
        case match
    }

    /// A set of bytes, 256 bits.
    struct ByteSet: Sendable, Equatable {
        var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

        static func == (lhs: ByteSet, rhs: ByteSet) -> Bool { lhs.bits == rhs.bits }

        func contains(_ byte: UInt8) -> Bool {
            let bit = UInt64(1) << UInt64(byte & 63)
            switch byte >> 6 {
            case 0: return bits.0 & bit != 0
            case 1: return bits.1 & bit != 0
            case 2: return bits.2 & bit != 0
            default: return bits.3 & bit != 0
            }
        }

        mutating func insert(_ byte: UInt8) {
            let bit = UInt64(1) << UInt64(byte & 63)
            switch byte >> 6 {
            case 0: bits.0 |= bit
            case 1: bits.1 |= bit
            case 2: bits.2 |= bit
            default: bits.3 |= bit
            }
        }

        mutating func insert(_ range: ClosedRange<UInt8>) { for b in range { insert(b) } }
        mutating func formUnion(_ other: ByteSet) {
            bits = (bits.0 | other.bits.0, bits.1 | other.bits.1, bits.2 | other.bits.2, bits.3 | other.bits.3)
        }
        var inverted: ByteSet { ByteSet(bits: (~bits.0, ~bits.1, ~bits.2, ~bits.3)) }

        static func of(_ bytes: ClosedRange<UInt8>...) -> ByteSet {
            var set = ByteSet()
            for r in bytes { set.insert(r) }
            return set
        }
        static let digit = ByteSet.of(0x30...0x39)
        static let word = ByteSet.of(0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F...0x5F)
        static let space = ByteSet.of(0x20...0x20, 0x09...0x0D)
        static let any: ByteSet = ByteSet.of(0x00...0x09, 0x0B...0xFF)  // `.`: anything but a newline
    }

    /// A sparse set of program counters: O(1) insert and clear, members in insertion order.
    struct ThreadList {
        var dense: [Int]
        var sparse: [Int]
        var size = 0
        init(capacity: Int) {
            dense = Array(repeating: 0, count: capacity)
            sparse = Array(repeating: 0, count: capacity)
        }
        mutating func insert(_ pc: Int) -> Bool {
            let at = sparse[pc]
            if at < size && dense[at] == pc { return false }
            sparse[pc] = size
            dense[size] = pc
            size += 1
            return true
        }
        mutating func clear() { size = 0 }
        var members: ArraySlice<Int> { dense[0..<size] }
    }

    indirect enum Node {
        case empty
        case set(ByteSet)
        case start
        case end
        case concat([Node])
        case alternation([Node])
        case repeated(Node, min: Int, max: Int?)
    }

    struct Parser {
        let chars: [Unicode.Scalar]
        var at = 0

        init(_ chars: [Unicode.Scalar]) { self.chars = chars }

        func fail(_ message: String, at offset: Int? = nil) -> SyntaxError {
            SyntaxError(offset: offset ?? at, message: message)
        }

        var peek: Unicode.Scalar? { at < chars.count ? chars[at] : nil }

        mutating func parse() throws -> Node {
            let node = try alternation(depth: 0)
            if at < chars.count { throw fail("unmatched ')'") }
            return node
        }

        mutating func alternation(depth: Int) throws -> Node {
            guard depth < 100 else { throw fail("groups nested too deep") }
            var branches = [try concatenation(depth: depth)]
            while peek == "|" {
                at += 1
                branches.append(try concatenation(depth: depth))
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func concatenation(depth: Int) throws -> Node {
            var items: [Node] = []
            while let c = peek, c != "|", c != ")" {
                var atom = try self.atom(depth: depth)
                atom = try quantified(atom)
                items.append(atom)
            }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concat(items)
        }

        mutating func quantified(_ atom: Node) throws -> Node {
            var node = atom
            while let c = peek {
                let start = at
                var min = 0
                var max: Int?
                switch c {
                case "*": at += 1
                case "+": at += 1; min = 1
                case "?": at += 1; max = 1
                case "{":
                    guard let bounds = try counted() else { return node }  // a literal '{'
                    (min, max) = bounds
                default:
                    return node
                }
                if case .start = node { throw fail("a quantifier cannot follow an anchor", at: start) }
                if case .end = node { throw fail("a quantifier cannot follow an anchor", at: start) }
                if peek == "+" { throw fail("possessive quantifiers are not supported (they need backtracking)") }
                if peek == "?" { at += 1 }  // lazy: the same yes/no answer
                node = .repeated(node, min: min, max: max)
            }
            return node
        }

        /// `{n}`, `{n,}`, `{n,m}`; nil (nothing consumed) when the brace does not start one.
        mutating func counted() throws -> (Int, Int?)? {
            let start = at
            var i = at + 1
            func number() -> Int? {
                var value = 0
                var digits = 0
                while i < chars.count, let d = Int(String(chars[i])), chars[i].isASCII, d >= 0, d <= 9 {
                    value = value * 10 + d
                    digits += 1
                    i += 1
                    if value > 1_000_000 { return value }
                }
                return digits > 0 ? value : nil
            }
            guard let low = number() else { return nil }
            var high: Int? = low
            if i < chars.count, chars[i] == "," {
                i += 1
                high = number()
            }
            guard i < chars.count, chars[i] == "}" else { return nil }
            at = i + 1
            if let high, high < low { throw fail("{\(low),\(high)}: the maximum is below the minimum", at: start) }
            if low > BoundedRegex.maxRepeat || (high ?? 0) > BoundedRegex.maxRepeat {
                throw fail("counted repetition above \(BoundedRegex.maxRepeat)", at: start)
            }
            return (low, high)
        }

        mutating func atom(depth: Int) throws -> Node {
            let start = at
            let c = chars[at]
            at += 1
            switch c {
            case "(":
                if peek == "?" {
                    at += 1
                    switch peek {
                    case ":":
                        at += 1
                    case "<" where at + 1 < chars.count && chars[at + 1] != "=" && chars[at + 1] != "!":
                        // A named group: only grouping matters here.
                        while let n = peek, n != ">" { at += 1 }
                        guard peek == ">" else { throw fail("unterminated group name", at: start) }
                        at += 1
                    case "=", "!", "<":
                        throw fail("lookaround cannot be matched in linear time", at: start)
                    case ">":
                        throw fail("atomic groups are not supported (they need backtracking)", at: start)
                    default:
                        throw fail("inline flags and other (?...) groups are not supported", at: start)
                    }
                }
                let inner = try alternation(depth: depth + 1)
                guard peek == ")" else { throw fail("missing ')' for the group opened here", at: start) }
                at += 1
                return inner
            case ")":
                throw fail("unmatched ')'", at: start)
            case "[":
                return .set(try characterClass(start: start))
            case ".":
                return .set(.any)
            case "^":
                return .start
            case "$":
                return .end
            case "\\":
                return try escape(start: start, inClass: false)
            case "*", "+", "?":
                throw fail("'\(c)' has nothing to repeat", at: start)
            default:
                return literal(c)
            }
        }

        func literal(_ c: Unicode.Scalar) -> Node {
            let bytes = Array(String(c).utf8)
            if bytes.count == 1 {
                var set = ByteSet()
                set.insert(bytes[0])
                return .set(set)
            }
            return .concat(bytes.map { b in var set = ByteSet(); set.insert(b); return .set(set) })
        }

        /// After a backslash. In a class only single-byte results are allowed.
        mutating func escape(start: Int, inClass: Bool) throws -> Node {
            guard let c = peek else { throw fail("a pattern cannot end with '\\'", at: start) }
            at += 1
            switch c {
            case "d": return .set(.digit)
            case "D": return .set(ByteSet.digit.inverted)
            case "w": return .set(.word)
            case "W": return .set(ByteSet.word.inverted)
            case "s": return .set(.space)
            case "S": return .set(ByteSet.space.inverted)
            case "t": return .set(.of(0x09...0x09))
            case "n": return .set(.of(0x0A...0x0A))
            case "r": return .set(.of(0x0D...0x0D))
            case "f": return .set(.of(0x0C...0x0C))
            case "v": return .set(.of(0x0B...0x0B))
            case "A" where !inClass: return .start
            case "z" where !inClass: return .end
            case "x":
                guard at + 2 <= chars.count, let value = UInt8(String(chars[at]) + String(chars[at + 1]), radix: 16) else {
                    throw fail("\\x needs two hex digits", at: start)
                }
                at += 2
                return .set(.of(value...value))
            case "1"..."9", "k":
                throw fail("backreferences cannot be matched in linear time", at: start)
            case "b", "B":
                throw fail("word boundaries are not supported", at: start)
            case "p", "P", "Q", "E", "G", "Z", "X", "u", "U", "N", "R", "h", "H", "K", "0":
                throw fail("'\\\(c)' is not supported", at: start)
            default:
                guard c.isASCII, !c.properties.isAlphabetic else { throw fail("unknown escape '\\\(c)'", at: start) }
                return literal(c)
            }
        }

        mutating func characterClass(start: Int) throws -> ByteSet {
            var set = ByteSet()
            var negated = false
            if peek == "^" { negated = true; at += 1 }
            var first = true
            while true {
                guard let c = peek else { throw fail("missing ']' for the class opened here", at: start) }
                if c == "]" && !first { at += 1; break }
                first = false
                let low: UInt8
                if c == "\\" {
                    let escapeStart = at
                    at += 1
                    guard case .set(let s) = try escape(start: escapeStart, inClass: true) else {
                        throw fail("this escape cannot be used in a class", at: escapeStart)
                    }
                    if s.bits.0.nonzeroBitCount + s.bits.1.nonzeroBitCount + s.bits.2.nonzeroBitCount + s.bits.3.nonzeroBitCount != 1 {
                        set.formUnion(s)
                        continue
                    }
                    low = (0...255).first { s.contains(UInt8($0)) }.map { UInt8($0) }!
                } else {
                    guard c.isASCII else { throw fail("only ASCII characters can be used in a class", at: at) }
                    low = UInt8(c.value)
                    at += 1
                }
                if peek == "-", at + 1 < chars.count, chars[at + 1] != "]" {
                    at += 1
                    let highChar = chars[at]
                    var high: UInt8
                    if highChar == "\\" {
                        let escapeStart = at
                        at += 1
                        guard case .set(let s) = try escape(start: escapeStart, inClass: true),
                              let only = (0...255).first(where: { s.contains(UInt8($0)) }) else {
                            throw fail("bad range end", at: escapeStart)
                        }
                        high = UInt8(only)
                    } else {
                        guard highChar.isASCII else { throw fail("only ASCII characters can be used in a class", at: at) }
                        high = UInt8(highChar.value)
                        at += 1
                    }
                    guard low <= high else { throw fail("range out of order", at: at - 1) }
                    set.insert(low...high)
                } else {
                    set.insert(low)
                }
            }
            return negated ? set.inverted : set
        }
    }

    struct Compiler {
        var program: [Instruction] = []
        var sets: [ByteSet] = []

        mutating func emit(_ node: Node) throws {
            guard program.count <= BoundedRegex.maxInstructions else {
                throw SyntaxError(offset: 0, message: "the pattern is too large once its repetitions are expanded (more than \(BoundedRegex.maxInstructions) states)")
            }
            switch node {
            case .empty:
                break
            case .set(let set):
                if let index = sets.firstIndex(of: set) {
                    program.append(.byte(index))
                } else {
                    sets.append(set)
                    program.append(.byte(sets.count - 1))
                }
            case .start:
                program.append(.assertStart)
            case .end:
                program.append(.assertEnd)
            case .concat(let items):
                for item in items { try emit(item) }
            case .alternation(let branches):
                // split L1, next; L1: branch; jump end; next: split ...
                var jumps: [Int] = []
                for (i, branch) in branches.enumerated() {
                    if i < branches.count - 1 {
                        let split = program.count
                        program.append(.split(split + 1, 0))
                        try emit(branch)
                        jumps.append(program.count)
                        program.append(.jump(0))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try emit(branch)
                    }
                }
                for jump in jumps { program[jump] = .jump(program.count) }
            case .repeated(let inner, let min, let max):
                for _ in 0..<min { try emit(inner) }
                if let max {
                    // Optional copies, each skipping to the end.
                    var splits: [Int] = []
                    for _ in min..<max {
                        splits.append(program.count)
                        program.append(.split(program.count + 1, 0))
                        try emit(inner)
                    }
                    for split in splits { program[split] = .split(split + 1, program.count) }
                } else {
                    // L: split body, end; body; jump L
                    let loop = program.count
                    program.append(.split(loop + 1, 0))
                    try emit(inner)
                    program.append(.jump(loop))
                    program[loop] = .split(loop + 1, program.count)
                }
            }
        }
    }
}

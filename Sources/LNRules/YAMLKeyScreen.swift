/// Finds keys that are not plain words before a rule file reaches Yams.
///
/// A rule file's keys are always words (`rules`, `match`, `type` ...). YAML also allows keys that
/// are collections: an explicit key (`? [a, b]`), a flow collection used as a key (`{a: 1}: x`) or an
/// alias of one (`*anchor : x`). Yams checks a mapping for duplicate keys by sorting them, and
/// comparing nested collection keys takes time exponential in their depth: a 467-byte file of
/// nested `? -` keys kept `rules check` busy for minutes (found by the `rules` fuzzer). Such keys
/// are refused here, in one linear pass over the text, with the place they start.
///
/// The scan follows just enough of YAML's syntax to know where a node starts: line starts, after
/// `- `, `: `, and, inside flow collections, after `{`, `[` and `,`; quoted scalars, block scalars
/// (`|`, `>`) and comments are skipped. It does not follow multi-line plain scalars, so a valid
/// file whose plain text continues on a line starting with `? ` would be refused too (quote such
/// text). The three ways YAML spells a collection key (`? `, a flow collection, an alias) are
/// each tested in RuleDiagnosticsTests.
enum YAMLKeyScreen {
    struct Finding: Equatable {
        var line: Int
        var column: Int
        /// What the key is: "an explicit key (`? `)", "a flow collection" or "an alias".
        var what: String
    }

    static func firstComplexKey(in text: String) -> Finding? {
        let b = Array(text.utf8)
        let n = b.count
        var i = 0
        var line = 1, lineStart = 0
        var lineIndent = 0
        var atLineStart = true
        var nodeStart = true
        var flowDepth = 0

        func column(_ at: Int) -> Int { at - lineStart + 1 }
        func isBlank(_ at: Int) -> Bool { at >= n || b[at] == 0x20 || b[at] == 0x09 || b[at] == 0x0A || b[at] == 0x0D }
        func isFlowIndicator(_ c: UInt8) -> Bool { c == 0x2C || c == 0x5B || c == 0x5D || c == 0x7B || c == 0x7D }
        /// After a node that ended at `at`: is it followed (on its line) by `:` used as a key's colon?
        func followedByKeyColon(_ at: Int) -> Bool {
            var j = at
            while j < n, b[j] == 0x20 || b[j] == 0x09 { j += 1 }
            guard j < n, b[j] == 0x3A else { return false }
            return flowDepth > 0 || isBlank(j + 1)
        }

        while i < n {
            let c = b[i]
            if c == 0x0A {
                i += 1
                line += 1
                lineStart = i
                atLineStart = true
                nodeStart = true
                continue
            }
            if atLineStart {
                if c == 0x20 || c == 0x09 || c == 0x0D { i += 1; continue }
                atLineStart = false
                lineIndent = i - lineStart
            }
            // A comment: `#` at a line start or after blank space.
            if c == 0x23 && (i == lineStart || isBlank(i - 1)) {
                while i < n, b[i] != 0x0A { i += 1 }
                continue
            }
            if nodeStart {
                switch c {
                case 0x3F where isBlank(i + 1):  // `? `
                    return Finding(line: line, column: column(i), what: "an explicit key (`? `)")
                case 0x2D where flowDepth == 0 && isBlank(i + 1):  // `- ` a block sequence entry
                    i += 1
                    continue
                case 0x26, 0x21:  // `&anchor` or `!tag` before a node: the node starts after it
                    while i < n, !isBlank(i), !(flowDepth > 0 && isFlowIndicator(b[i])) { i += 1 }
                    continue
                case 0x2A:  // `*alias`
                    let start = i
                    while i < n, !isBlank(i), !(flowDepth > 0 && isFlowIndicator(b[i])) { i += 1 }
                    if followedByKeyColon(i) { return Finding(line: line, column: column(start), what: "an alias") }
                    nodeStart = false
                    continue
                case 0x27, 0x22:  // a quoted scalar, perhaps over several lines
                    let quote = c
                    i += 1
                    while i < n {
                        if b[i] == 0x0A { line += 1; lineStart = i + 1 }
                        if quote == 0x22 && b[i] == 0x5C { i += 2; continue }  // `\"` and other escapes
                        if b[i] == quote {
                            if quote == 0x27 && i + 1 < n && b[i + 1] == 0x27 { i += 2; continue }  // `''`
                            break
                        }
                        i += 1
                    }
                    i += 1
                    nodeStart = false
                    continue
                case 0x7C, 0x3E:  // `|` or `>`: a block scalar; its lines are indented past this one
                    while i < n, b[i] != 0x0A { i += 1 }
                    while i < n {
                        var j = i + 1
                        while j < n, b[j] == 0x20 { j += 1 }
                        let blankLine = j >= n || b[j] == 0x0A || b[j] == 0x0D
                        guard blankLine || j - (i + 1) > lineIndent else { break }
                        line += 1
                        lineStart = i + 1
                        i = j
                        while i < n, b[i] != 0x0A { i += 1 }
                    }
                    nodeStart = false
                    continue
                default:
                    break
                }
            }
            switch c {
            case 0x5B where nodeStart || flowDepth > 0, 0x7B where nodeStart || flowDepth > 0:  // `[` `{`
                flowDepth += 1
                nodeStart = true
                i += 1
            case 0x5D where flowDepth > 0, 0x7D where flowDepth > 0:  // `]` `}`
                flowDepth -= 1
                i += 1
                if followedByKeyColon(i) { return Finding(line: line, column: column(i - 1), what: "a flow collection") }
                nodeStart = false
            case 0x2C where flowDepth > 0:  // `,`
                nodeStart = true
                i += 1
            case 0x3A where isBlank(i + 1) || (flowDepth > 0 && (i + 1 >= n || isFlowIndicator(b[i + 1]))):  // `: `
                nodeStart = true
                i += 1
            case 0x20, 0x09, 0x0D:
                i += 1
            default:
                nodeStart = false
                i += 1
            }
        }
        return nil
    }
}

import LNRules

/// `RuleParser.parse` on arbitrary text, as `lnrr rules check` and `--rules` read it. Property: it
/// returns a rule set or diagnostics, never crashes or hangs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRules(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: input, as: UTF8.self)
    let (rules, diagnostics) = RuleParser.parse(yaml: text, file: "fuzz.yaml")
    precondition(rules != nil || !diagnostics.isEmpty, "a rule file refused without a diagnostic")
    for diagnostic in diagnostics {
        precondition(diagnostic.line >= 1 && diagnostic.column >= 1, "diagnostic without a position: \(diagnostic)")
    }
    return 0
}

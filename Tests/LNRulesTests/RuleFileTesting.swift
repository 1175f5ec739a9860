@testable import LNRules

/// Parsing rule files in tests: a suite that conforms gets `rules(_:)` (the set, or the
/// diagnostics thrown) and `problems(_:)` (the diagnostics as lnrr prints them).
protocol RuleFileTesting {}

extension RuleFileTesting {
    func rules(_ yaml: String) throws -> RuleSet {
        let (set, diagnostics) = RuleParser.parse(yaml: yaml, file: "t.yaml")
        guard let set else { throw RuleFileFailure(description: diagnostics.map(\.description).joined(separator: "\n")) }
        return set
    }

    func problems(_ yaml: String) -> [String] {
        RuleParser.parse(yaml: yaml, file: "t.yaml").1.map(\.description)
    }
}

/// A rule file that should have parsed did not: its diagnostics.
struct RuleFileFailure: Error, CustomStringConvertible {
    let description: String
}

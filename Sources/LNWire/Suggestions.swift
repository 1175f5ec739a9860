/// "Did you mean" for every place a user types a name: rule keys, control-socket methods and
/// parameters, command-line options. One threshold, so every suggestion feels the same.
public enum Suggestions {
    /// The candidates within editing distance of `word` (at most max(2, a third of its length)),
    /// nearest first, ties in alphabetical order.
    public static func nearest(_ word: String, in candidates: some Sequence<String>, limit: Int = 3) -> [String] {
        let threshold = max(2, word.count / 3)
        var scored: [(name: String, distance: Int)] = []
        for candidate in candidates where candidate != word {
            let distance = editDistance(candidate, word)
            if distance <= threshold { scored.append((candidate, distance)) }
        }
        scored.sort { $0.distance == $1.distance ? $0.name < $1.name : $0.distance < $1.distance }
        return scored.prefix(limit).map(\.name)
    }
}

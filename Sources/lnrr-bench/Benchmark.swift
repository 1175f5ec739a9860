// The benchmark runner's parts: the clock, the rate loop, and the results table each figure joins
// beside its same-run baseline.
import Foundation

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `body` repeatedly for about `seconds`, returns operations per second (best of 3 rounds).
func rate(seconds: Double = 1.0, batch: Int, _ body: () -> Void) -> Double {
    var best = 0.0
    for _ in 0..<3 {
        var operations = 0
        let start = now()
        var elapsed = 0.0
        while elapsed < seconds / 3 {
            for _ in 0..<batch { body() }
            operations += batch
            elapsed = now() - start
        }
        best = max(best, Double(operations) / elapsed)
    }
    return best
}

/// One figure and the baseline measured beside it in the same run.
struct Row {
    var name: String
    var value: Double
    var unit: String
    var baselineName: String
    var baseline: Double
    var target: String
}

/// The rows printed so far, in order (a later group may read an earlier one's figure: latency's
/// near-saturation rate comes from the proxy group). Used from one task at a time.
final class Results {
    private(set) var rows: [Row] = []

    /// Prints `row` with its ratio to the baseline, and keeps it.
    func add(_ row: Row) {
        rows.append(row)
        let ratio = row.baseline > 0 ? row.value / row.baseline : 0
        print(String(format: "%-46@ %12.0f %-6@  %-36@ %12.0f   ratio %.2f   target %@",
                     row.name as NSString, row.value, row.unit as NSString, row.baselineName as NSString, row.baseline, ratio, row.target as NSString))
        fflush(stdout)
    }
}

/// One benchmark group, run by name (`lnrr-bench NAME`) or with all the others, in the order
/// main.swift lists them. Every figure it adds has a baseline measured in the same run.
protocol Benchmark {
    /// The group's name on the command line.
    var name: String { get }
    /// Whether a run of every group includes it (false for minutes-long groups, run only by name).
    var runsWithAll: Bool { get }
    func run(results: Results) async throws
}

extension Benchmark {
    var runsWithAll: Bool { true }
}

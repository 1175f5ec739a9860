// lnrr-bench: lnrr's performance, each figure beside a baseline measured in the same run, because
// these machines are noisy and only ratios compare across runs. Run through tools/bench (release).
//
// One file per benchmark group (a `Benchmark`, after swift-nio-ssh's performance tester); this
// runner runs one group by name, or all of them in this order.
import Foundation

let benchmarks: [any Benchmark] = [
    FramesBenchmark(), HandshakeBenchmark(), ProxyBenchmark(), LatencyBenchmark(), MemoryBenchmark(), ReadBenchmark(),
    HookBenchmark(), SoakBenchmark(),
]

let only = CommandLine.arguments.dropFirst().first
if let only, !benchmarks.contains(where: { $0.name == only }) {
    FileHandle.standardError.write(Data("lnrr-bench: no group '\(only)'; the groups are \(benchmarks.map(\.name).joined(separator: ", "))\n".utf8))
    exit(2)
}
print("lnrr-bench: figure, baseline measured in the same run, ratio (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
let results = Results()
for benchmark in benchmarks where only == benchmark.name || (only == nil && benchmark.runsWithAll) {
    try await benchmark.run(results: results)
}

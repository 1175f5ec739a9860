// lnrr-bench group "hook" (main.swift runs the groups; Benchmark.swift has the method).
import Foundation
import LNProxy
import LNTransport
import Logging
import NIOCore
import NIOPosix

// MARK: 7. Hooks: a pyln-client plugin on custommsg behind the proxy vs the same plugin fed from a pipe.

/// The Python that has pyln-client: the test venv when there is one.
func benchPython() -> String {
    FileManager.default.isExecutableFile(atPath: ".venv/bin/python") ? ".venv/bin/python" : "python3"
}

/// The plugin alone: `getmanifest`, `init`, then `count` custommsg calls written into its stdin as
/// fast as it takes them (the calls lnrr would make), timed until the last answer is read.
func pluginAloneRate(plugin: String, count: Int, size: Int) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", "exec " + plugin]
    var environment = ProcessInfo.processInfo.environment
    environment["LIGHTNINGD_PLUGIN"] = "1"
    process.environment = environment
    let input = Pipe(), output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    let peer = NodeSecret.random().nodeID.hex
    let payload = "8001" + String(repeating: "33", count: size - 2)
    var setup = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getmanifest\",\"params\":{}}\n\n"
    setup += "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"init\",\"params\":{\"options\":{},\"configuration\":{\"lightning-dir\":\"/tmp\",\"rpc-file\":\"none\",\"startup\":true}}}\n\n"
    input.fileHandleForWriting.write(Data(setup.utf8))
    let reader = output.fileHandleForReading
    // Counts answers: each ends with a blank line.
    func readAnswers(_ wanted: Int) {
        var seen = 0
        var last: UInt8 = 0
        while seen < wanted {
            let chunk = reader.availableData
            if chunk.isEmpty { return }
            for byte in chunk {
                if byte == 0x0A && last == 0x0A { seen += 1 }
                last = byte
            }
        }
    }
    readAnswers(2)
    var calls = Data()
    for id in 0..<count {
        calls.append(Data("{\"jsonrpc\":\"2.0\",\"id\":\(id + 3),\"method\":\"custommsg\",\"params\":{\"peer_id\":\"\(peer)\",\"payload\":\"\(payload)\"}}\n\n".utf8))
    }
    let start = now()
    let allCalls = calls
    let writer = Thread { input.fileHandleForWriting.write(allCalls) }
    writer.start()
    readAnswers(count)
    let elapsed = now() - start
    try? input.fileHandleForWriting.close()
    process.waitUntilExit()
    return Double(count) / elapsed
}

/// The plugin host without the proxy: `count` questions asked at once, timed until the last answer.
func askRate(_ host: PluginHost, count: Int, size: Int) async throws -> Double {
    let message = [0x80, 0x01] + [UInt8](repeating: 0x33, count: size - 2)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let done = group.next().makePromise(of: Void.self)
    final class Counter: @unchecked Sendable { var n = 0 }
    let counter = Counter()
    let loop = done.futureResult.eventLoop
    let start = now()
    for i in 0..<count {
        host.ask(HookQuery(session: 1, direction: .aToB, peerID: nil, phase: "normal", message: message)) { _ in
            loop.execute {
                counter.n += 1
                if counter.n == count { done.succeed(()) }
            }
        }
        if i % 1024 == 1023 { try await Task.sleep(nanoseconds: 0) }
    }
    try await done.futureResult.get()
    let elapsed = now() - start
    try await group.shutdownGracefully()
    return Double(count) / elapsed
}

func hookBenchmarks(results: Results) async throws {
    let python = benchPython()
    let plugin = "\(python) tools/python/examples/passthrough.py"
    let count = 20_000, size = 256
    var alone = 0.0, proxied = 0.0, hostOnly = 0.0
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    for _ in 0..<2 {
        alone = max(alone, try pluginAloneRate(plugin: plugin, count: count, size: size))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let host = try await PluginHost.start(PluginHost.Configuration(commands: [plugin], controlSocket: nil, hookTimeout: .seconds(30), lnrrVersion: "bench"),
                                              group: group, logger: logger)
        // The sender retries every millisecond when the proxy holds it back: polling faster would
        // take CPU from the plugin being measured (these machines have 2 cores).
        proxied = max(proxied, try await throughput(viaProxy: true, recordingDirectory: nil, messages: count, size: size, hook: host,
                                                    retry: .milliseconds(1)))
        hostOnly = max(hostOnly, try await askRate(host, count: count, size: size))
        await host.stop()
        try await group.shutdownGracefully()
    }
    results.add(Row(name: "a->b custom messages via proxy + pyln plugin", value: proxied, unit: "msg/s",
               baselineName: "the plugin alone, fed from a pipe", baseline: alone, target: ">= 0.70"))
    results.add(Row(name: "PluginHost.ask alone (no sockets, no session)", value: hostOnly, unit: "msg/s",
               baselineName: "the plugin alone, fed from a pipe", baseline: alone, target: "-"))
    // Today's slow path: one process per message.
    let oneShot = OneShotHook(command: "\(python) -c 'import sys, json; sys.stdin.read(); print(json.dumps({\"result\": \"continue\"}))'", timeout: 30)
    let oneShotRate = try await throughput(viaProxy: true, recordingDirectory: nil, messages: 20, size: size, hook: oneShot)
    results.add(Row(name: "a->b custom messages via proxy + --custommsg-hook", value: oneShotRate, unit: "msg/s",
               baselineName: "via proxy + pyln plugin (above)", baseline: proxied, target: "- (the slow path)"))
}

/// `lnrr-bench hook`.
struct HookBenchmark: Benchmark {
    let name = "hook"

    func run(results: Results) async throws {
        try await hookBenchmarks(results: results)
    }
}

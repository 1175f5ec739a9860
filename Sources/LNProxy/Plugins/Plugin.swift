import Foundation
import Logging
import LNWire
import NIOCore
import NIOPosix

/// Why a call to a plugin got no usable answer.
public enum PluginCallError: Error, CustomStringConvertible, Sendable {
    /// The plugin answered with a JSON-RPC error.
    case rpc(code: Int, message: String)
    case timedOut(milliseconds: Int64)
    /// The plugin is not running (any more); the text says why.
    case gone(String)

    public var description: String {
        switch self {
        case .rpc(let code, let message): return "error \(code): \(message)"
        case .timedOut(let ms): return "timed out after \(ms) ms"
        case .gone(let why): return why
        }
    }
}

/// What a plugin declared in its `getmanifest` answer (the parts lnrr uses).
struct PluginManifest: Sendable {
    struct Option: Sendable {
        var name: String
        var type: String
        var defaultValue: JSONValue?
        var multi: Bool
    }

    struct Hook: Sendable {
        var name: String
        /// Message types the hook wants; `nil`: all it can get.
        var filters: Set<UInt16>?
    }

    var options: [Option] = []
    var rpcMethods: [String] = []
    var subscriptions: Set<String> = []
    var hooks: [Hook] = []
}

/// One plugin process and its JSON-RPC connection over the process's stdin/stdout, in Core
/// Lightning's framing: JSON objects, each followed by a blank line.
///
/// Confined to `loop` (the plugin host's event loop): every method must be called on it. Requests
/// are pipelined: each is written as it is made, answers are matched by id.
final class Plugin: @unchecked Sendable {
    let command: String
    /// The name logs and recordings use: the command's file name.
    let name: String
    let loop: EventLoop
    let logger: Logger
    var manifest = PluginManifest()

    private var channel: Channel?
    private var process: Process?
    private var pending: [Int: (Result<JSONValue, PluginCallError>) -> Void] = [:]
    /// Deadlines of calls, one FIFO per timeout length (so each is in deadline order), swept by one
    /// timer: a NIO timer per call would cost a heap insert and a linear-time cancel per message.
    private var deadlines: [Int64: CircularBuffer<(id: Int, at: NIODeadline)>] = [:]
    private var sweep: Scheduled<Void>?
    private var sweepAt: NIODeadline?
    private var nextID = 1
    private var flushScheduled = false
    /// Set when the plugin can no longer be used; says why.
    private(set) var goneReason: String?
    /// The last few KiB of its stderr, for the message when it fails.
    private(set) var stderrTail = ""
    /// The exit status, once the process has ended.
    private(set) var exitStatus: Int32?
    /// Called once, on `loop`, when the plugin stops being usable after startup.
    var onGone: ((String) -> Void)?
    private let exited: EventLoopPromise<Void>

    var isAlive: Bool { goneReason == nil }

    init(command: String, loop: EventLoop, logger: Logger) {
        self.command = command
        let first = command.split(separator: " ", maxSplits: 1).first.map(String.init) ?? command
        self.name = (first as NSString).lastPathComponent
        self.loop = loop
        self.logger = logger
        self.exited = loop.makePromise()
    }

    // MARK: Process

    /// Starts the process (`/bin/sh -c "exec CMD"`, so CMD may carry arguments) with its three
    /// standard streams on pipes, and connects stdin/stdout to a NIO pipe channel.
    func spawn(environment extra: [String: String], maxMessageBytes: Int) -> EventLoopFuture<Void> {
        var toChild: [Int32] = [-1, -1], fromChild: [Int32] = [-1, -1], errFromChild: [Int32] = [-1, -1]
        // Close-on-exec: another plugin started later must not inherit these (it would keep this
        // plugin's stdin open after lnrr closes it).
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0, pipe(&errFromChild) == 0 else {
            return loop.makeFailedFuture(PluginCallError.gone("cannot create pipes: \(String(cString: strerror(errno)))"))
        }
        for fd in toChild + fromChild + errFromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec " + command]
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        process.standardInput = FileHandle(fileDescriptor: toChild[0], closeOnDealloc: false)
        process.standardOutput = FileHandle(fileDescriptor: fromChild[1], closeOnDealloc: false)
        process.standardError = FileHandle(fileDescriptor: errFromChild[1], closeOnDealloc: false)
        let loop = self.loop
        process.terminationHandler = { [weak self] finished in
            let status = finished.terminationStatus
            guard let plugin = self else { return }
            loop.execute { plugin.processExited(status) }
        }
        do { try process.run() } catch {
            for fd in toChild + fromChild + errFromChild { close(fd) }
            return loop.makeFailedFuture(PluginCallError.gone("cannot start /bin/sh: \(error)"))
        }
        // The child has its copies; lnrr keeps only its own ends.
        close(toChild[0]); close(fromChild[1]); close(errFromChild[1])
        self.process = process
        let plugin = self
        let stderrChannel = NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(PluginStderrHandler(plugin: plugin)) }
            }
            .takingOwnershipOfDescriptor(input: errFromChild[0])
        let mainChannel = NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(JSONObjectFramer(maxBytes: maxMessageBytes)),
                        PluginStdoutHandler(plugin: plugin),
                    ])
                }
            }
            .takingOwnershipOfDescriptors(input: fromChild[0], output: toChild[1])
            .map { channel in plugin.channel = channel }
        return stderrChannel.and(mainChannel).map { _ in }
    }

    private func processExited(_ status: Int32) {
        exitStatus = status
        exited.succeed(())
        gone("exited with status \(status)")
    }

    /// Waits (at most `limit`) for the process to end, so its last stderr lines and status are known.
    func waitForExit(atMost limit: TimeAmount) -> EventLoopFuture<Void> {
        let done = loop.makePromise(of: Void.self)
        // Both callbacks run on `loop`, so the flag needs no lock.
        let finished = NIOLoopBoundBox(false, eventLoop: loop)
        let timer = loop.scheduleTask(in: limit) {
            if !finished.value { finished.value = true; done.succeed(()) }
        }
        exited.futureResult.whenComplete { _ in
            timer.cancel()
            if !finished.value { finished.value = true; done.succeed(()) }
        }
        return done.futureResult
    }

    /// Marks the plugin unusable: pending calls fail with `why`, its pipes close, the process is
    /// asked to stop (SIGTERM; it is not lnrr's to keep running).
    func gone(_ why: String) {
        guard goneReason == nil else {
            return
        }
        goneReason = why
        let calls = pending
        pending.removeAll()
        sweep?.cancel()
        deadlines.removeAll()
        for (_, completion) in calls.sorted(by: { $0.key < $1.key }) {
            completion(.failure(.gone("plugin \(name) \(why)")))
        }
        channel?.close(promise: nil)
        if let process, process.isRunning { kill(process.processIdentifier, SIGTERM) }
        onGone?(why)
    }

    /// Stops the plugin at lnrr's shutdown: closes its stdin (pyln-client plugins exit on EOF), then
    /// SIGTERM after `grace`.
    func stop(grace: TimeAmount) -> EventLoopFuture<Void> {
        onGone = nil
        guard let process else { return loop.makeSucceededVoidFuture() }
        channel?.close(promise: nil)
        return waitForExit(atMost: grace).flatMap { [self] in
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            return waitForExit(atMost: grace)
        }.map {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    // MARK: JSON-RPC

    /// Sends a request; `completion` gets the `result` or why there is none. `timeout` nil: none.
    func call(_ method: String, _ params: JSONValue, timeout: TimeAmount?, _ completion: @escaping (Result<JSONValue, PluginCallError>) -> Void) {
        var rendered = ""
        params.write(into: &rendered)
        call(method, renderedParams: rendered, timeout: timeout, completion)
    }

    /// `call` with the params already written as JSON text (the hook path builds them directly).
    func call(_ method: String, renderedParams: String, timeout: TimeAmount?, _ completion: @escaping (Result<JSONValue, PluginCallError>) -> Void) {
        guard goneReason == nil, let channel else {
            completion(.failure(.gone("plugin \(name) \(goneReason ?? "is not running")")))
            return
        }
        let id = nextID
        nextID += 1
        var text = "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"method\":"
        JSONValue.writeString(method, into: &text)
        text += ",\"params\":"
        text += renderedParams
        text += "}\n\n"
        pending[id] = completion
        if let timeout {
            let at = NIODeadline.now() + timeout
            deadlines[timeout.nanoseconds, default: []].append((id, at))
            if sweepAt == nil || at < sweepAt! { armSweep(at) }
        }
        write(text, on: channel)
    }

    private func armSweep(_ at: NIODeadline) {
        sweep?.cancel()
        sweepAt = at
        sweep = loop.scheduleTask(deadline: at) { [weak self] in self?.sweepDeadlines() }
    }

    /// Fails the calls whose deadline has passed (those answered meanwhile are skipped), then
    /// re-arms for the earliest remaining deadline.
    private func sweepDeadlines() {
        sweep = nil
        sweepAt = nil
        let now = NIODeadline.now()
        var next: NIODeadline?
        for length in Array(deadlines.keys) {
            while let head = deadlines[length]!.first {
                if pending[head.id] == nil { _ = deadlines[length]!.popFirst(); continue }
                if head.at > now { next = min(next ?? head.at, head.at); break }
                _ = deadlines[length]!.popFirst()
                if let completion = pending.removeValue(forKey: head.id) {
                    completion(.failure(.timedOut(milliseconds: length / 1_000_000)))
                }
            }
            if deadlines[length]?.isEmpty ?? false { deadlines[length] = nil }
        }
        if let next, goneReason == nil { armSweep(next) }
    }

    /// Notifications not sent because the plugin was not reading its stdin.
    private var droppedNotifications = 0

    /// Sends a notification (no answer expected). A plugin that does not read its stdin does not
    /// make lnrr buffer notifications without bound: past the pipe's write-buffer limit they are
    /// dropped (and counted in the log); hook calls are bounded by the sessions' queues instead.
    func notify(_ method: String, _ params: JSONValue) {
        guard goneReason == nil, let channel else { return }
        guard channel.isWritable else {
            droppedNotifications += 1
            if droppedNotifications == 1 || droppedNotifications % 1000 == 0 {
                logger.warning("plugin \(name) is not reading its stdin: \(droppedNotifications) notifications dropped so far")
            }
            return
        }
        var text = "{\"jsonrpc\":\"2.0\",\"method\":"
        JSONValue.writeString(method, into: &text)
        text += ",\"params\":"
        params.write(into: &text)
        text += "}\n\n"
        write(text, on: channel)
    }

    /// Writes now and flushes once per event-loop tick, so a burst of calls costs one write(2).
    private func write(_ text: String, on channel: Channel) {
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        channel.write(buffer, promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute { [self] in
            flushScheduled = false
            self.channel?.flush()
        }
    }

    /// One JSON object from the plugin's stdout.
    func received(_ object: ByteBuffer) {
        let value: JSONValue
        do { value = try JSONValue.parse(String(buffer: object)) } catch {
            gone("wrote invalid JSON (\(error)); it is stopped")
            return
        }
        if let idValue = value["id"], value["method"] == nil {
            guard let id = Self.integer(idValue), let completion = pending.removeValue(forKey: id) else {
                // An answer to a call that timed out, or to nothing: late, not harmful.
                logger.debug("plugin \(name) answered an id lnrr is not waiting for: \(idValue)")
                return
            }
            if let error = value["error"] {
                let code = error["code"].flatMap(Self.integer) ?? -1
                var message = "(no message)"
                if case .string(let m)? = error["message"] { message = m }
                completion(.failure(.rpc(code: code, message: message)))
            } else {
                completion(.success(value["result"] ?? .null))
            }
            return
        }
        guard case .string(let method)? = value["method"] else {
            gone("wrote a JSON object that is neither an answer nor a notification: \(String(buffer: object).prefix(80).debugDescription); it is stopped")
            return
        }
        if method == "log", let params = value["params"] {
            var message = ""
            if case .string(let m)? = params["message"] { message = m }
            var level = "info"
            if case .string(let l)? = params["level"] { level = l }
            let metadata: Logger.Metadata = ["plugin": "\(name)"]
            switch level {
            case "debug", "io", "trace": logger.debug("\(message)", metadata: metadata)
            case "unusual", "warn", "warning": logger.warning("\(message)", metadata: metadata)
            case "broken", "error": logger.error("\(message)", metadata: metadata)
            default: logger.info("\(message)", metadata: metadata)
            }
        } else {
            logger.debug("plugin \(name) sent notification \(method); lnrr does not use it")
        }
    }

    /// A line of the plugin's stderr: kept for error messages, and logged.
    func stderrLine(_ line: String) {
        stderrTail += line + "\n"
        if stderrTail.utf8.count > 4096 { stderrTail = String(stderrTail.suffix(3072)) }
        logger.notice("\(line)", metadata: ["plugin": "\(name)", "stream": "stderr"])
    }

    static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let text): return Int(text)
        case .number(let d): return Int(exactly: d)
        case .string(let s): return Int(s)
        default: return nil
        }
    }
}

/// Hands the plugin's stdout objects to it; a framing error or EOF ends it.
final class PluginStdoutHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let plugin: Plugin

    init(plugin: Plugin) { self.plugin = plugin }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        plugin.received(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        plugin.gone(error is PluginFramingError ? "\(error); it is stopped" : "failed: \(error)")
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        plugin.gone("closed its stdout")
        context.fireChannelInactive()
    }
}

/// Collects the plugin's stderr line by line.
final class PluginStderrHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let plugin: Plugin
    private var partial = ""

    init(plugin: Plugin) { self.plugin = plugin }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partial += String(buffer: unwrapInboundIn(data))
        while let newline = partial.firstIndex(of: "\n") {
            plugin.stderrLine(String(partial[..<newline]))
            partial = String(partial[partial.index(after: newline)...])
        }
        // A line without end is kept bounded.
        if partial.utf8.count > 4096 { plugin.stderrLine(partial); partial = "" }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !partial.isEmpty { plugin.stderrLine(partial); partial = "" }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

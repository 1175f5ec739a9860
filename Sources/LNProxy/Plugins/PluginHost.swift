import Foundation
import Logging
import LNWire
import NIOCore
import NIOPosix

/// Why plugins could not be started; `lnrr record` reports it and exits with status 2.
public struct PluginStartupError: Error, CustomStringConvertible {
    public var plugin: String
    public var reason: String
    /// The end of the plugin's stderr, which usually says what went wrong.
    public var stderr: String

    public var description: String {
        var text = "plugin \(plugin) failed to start: \(reason)"
        let tail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        if !tail.isEmpty { text += "\n--- its stderr ---\n\(tail)" }
        return text
    }
}

/// Runs `--plugin` commands for the whole life of `lnrr record` and speaks Core Lightning's plugin
/// protocol to them (docs/plugins.md): `getmanifest`, `init`, hook calls and notifications as
/// JSON-RPC 2.0 over each plugin's stdin/stdout, and the plugins' RPC methods for the control socket.
///
/// All its state lives on one event loop (`loop`); sessions reach it by `ask`, which hops there and
/// back. Hook calls are pipelined: each is written as soon as it is asked, and answers are released
/// per session and direction in the order asked (the `MessageHook` contract).
public final class PluginHost: MessageHook, @unchecked Sendable {
    public struct Configuration: Sendable {
        /// The `--plugin` commands, in order (hooks are chained in this order).
        public var commands: [String]
        /// The control socket, given to plugins as `lightning-dir` + `rpc-file` (they may call lnrr back).
        public var controlSocket: String?
        /// `--plugin-option NAME=VALUE`: values for options the plugins declare.
        public var options: [(String, String)]
        /// Per hook call; past it the message continues (the default verdict).
        public var hookTimeout: TimeAmount
        /// How long a plugin may take to answer `getmanifest` and `init`.
        public var startupTimeout: TimeAmount = .seconds(30)
        /// The largest JSON object a plugin may write.
        public var maxMessageBytes: Int = 4 << 20
        public var lnrrVersion: String

        public init(commands: [String], controlSocket: String?, options: [(String, String)] = [], hookTimeout: TimeAmount, lnrrVersion: String) {
            self.commands = commands
            self.controlSocket = controlSocket
            self.options = options
            self.hookTimeout = hookTimeout
            self.lnrrVersion = lnrrVersion
        }
    }

    /// Hooks lnrr offers: Core Lightning's `custommsg`, and `lnrr_message` on any message.
    public static let hookNames = ["custommsg", "lnrr_message"]
    /// Notification topics lnrr sends (plugins subscribe to them, or to "*").
    public static let topics = ["lnrr_session_start", "lnrr_session_end", "lnrr_phase", "lnrr_rule"]

    let loop: EventLoop
    let logger: Logger
    let configuration: Configuration
    let plugins: [Plugin]
    /// Fixed at startup, read from any thread by `consults`.
    private let customFilter: TypeFilter
    private let messageFilter: TypeFilter
    /// Whether any plugin subscribed to a notification topic.
    public let wantsNotifications: Bool

    /// Which types a hook is registered for across plugins.
    struct TypeFilter: Sendable {
        var all = false
        var types: Set<UInt16> = []
        var isEmpty: Bool { !all && types.isEmpty }
        func contains(_ type: UInt16) -> Bool { all || types.contains(type) }
        mutating func add(_ filters: Set<UInt16>?) {
            if let filters { types.formUnion(filters) } else { all = true }
        }
    }

    private init(loop: EventLoop, logger: Logger, configuration: Configuration, plugins: [Plugin]) {
        self.loop = loop
        self.logger = logger
        self.configuration = configuration
        self.plugins = plugins
        var custom = TypeFilter(), message = TypeFilter()
        var wants = false
        for plugin in plugins {
            for hook in plugin.manifest.hooks {
                if hook.name == "custommsg" { custom.add(hook.filters) } else { message.add(hook.filters) }
            }
            if !plugin.manifest.subscriptions.isDisjoint(with: Self.topics + ["*"]) { wants = true }
        }
        self.customFilter = custom
        self.messageFilter = message
        self.wantsNotifications = wants
    }

    /// Starts every plugin and waits for each to answer `getmanifest` and `init`. Any failure stops
    /// the ones already started and throws `PluginStartupError` with the plugin's stderr.
    public static func start(_ configuration: Configuration, group: EventLoopGroup, logger: Logger) async throws -> PluginHost {
        // Writing to a plugin that has died must be an error on the write, not a signal that ends lnrr.
        signal(SIGPIPE, SIG_IGN)
        let loop = group.next()
        var started: [Plugin] = []
        do {
            for command in configuration.commands {
                let plugin = Plugin(command: command, loop: loop, logger: logger)
                started.append(plugin)
                try await startOne(plugin, configuration)
            }
        } catch {
            for plugin in started { try? await loop.flatSubmit { plugin.stop(grace: .milliseconds(500)) }.get() }
            throw error
        }
        let plugins = started
        let host = PluginHost(loop: loop, logger: logger, configuration: configuration, plugins: plugins)
        try await loop.submit {
            for plugin in plugins {
                plugin.onGone = { [weak host, weak plugin] why in
                    guard let host, let plugin else { return }
                    host.pluginGone(plugin, why)
                }
            }
        }.get()
        return host
    }

    private static func startOne(_ plugin: Plugin, _ configuration: Configuration) async throws {
        let loop = plugin.loop
        func failure(_ reason: String) async -> PluginStartupError {
            // Let the process end and its stderr drain: that is usually where the reason is.
            _ = try? await loop.flatSubmit { plugin.waitForExit(atMost: .milliseconds(1500)) }.get()
            let (tail, status) = (try? await loop.submit { (plugin.stderrTail, plugin.exitStatus) }.get()) ?? ("", nil)
            var why = reason
            if let status, status == 127 { why += " (exit status 127: the command was not found)" } else if let status { why += " (exit status \(status))" }
            return PluginStartupError(plugin: plugin.command, reason: why, stderr: tail)
        }
        do {
            try await loop.flatSubmit {
                plugin.spawn(environment: ["LIGHTNINGD_PLUGIN": "1", "LIGHTNINGD_VERSION": "lnrr-\(configuration.lnrrVersion)"],
                             maxMessageBytes: configuration.maxMessageBytes)
            }.get()
        } catch {
            throw await failure("\(error)")
        }
        let manifestValue: JSONValue
        do {
            manifestValue = try await call(plugin, "getmanifest", .object([("allow-deprecated-apis", .bool(false))]), timeout: configuration.startupTimeout)
        } catch {
            throw await failure("getmanifest: \(error)")
        }
        let manifest: PluginManifest
        do { manifest = try parseManifest(manifestValue) } catch {
            throw await failure("getmanifest: \(error)")
        }
        try await loop.submit { plugin.manifest = manifest }.get()
        var options: [(String, JSONValue)] = []
        for (name, value) in configuration.options {
            guard let declared = manifest.options.first(where: { $0.name == name }) else { continue }
            options.append((name, optionValue(value, type: declared.type)))
        }
        for declared in manifest.options where !options.contains(where: { $0.0 == declared.name }) {
            if let value = declared.defaultValue { options.append((declared.name, value)) }
        }
        let socket = configuration.controlSocket.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let directory = socket.map { ($0 as NSString).deletingLastPathComponent } ?? FileManager.default.currentDirectoryPath
        let file = socket.map { ($0 as NSString).lastPathComponent } ?? "lnrr-no-control-socket"
        let initParams = JSONValue.object([
            ("options", .object(options)),
            ("configuration", .object([
                ("lightning-dir", .string(directory)),
                ("rpc-file", .string(file)),
                ("startup", .bool(true)),
                ("network", .string("regtest")),
                ("feature_set", .object([])),
                ("lnrr", .object([("version", .string(configuration.lnrrVersion)), ("control_socket", socket.map { .string($0) } ?? .null)])),
            ])),
        ])
        do {
            let answer = try await call(plugin, "init", initParams, timeout: configuration.startupTimeout)
            // Core Lightning lets a plugin decline to run: {"disable": "reason"}.
            if case .string(let reason)? = answer["disable"] { throw PluginCallError.rpc(code: 0, message: "the plugin disabled itself: \(reason)") }
        } catch {
            throw await failure("init: \(error)")
        }
    }

    private static func call(_ plugin: Plugin, _ method: String, _ params: JSONValue, timeout: TimeAmount) async throws -> JSONValue {
        let promise = plugin.loop.makePromise(of: JSONValue.self)
        plugin.loop.execute {
            plugin.call(method, params, timeout: timeout) { promise.completeWith($0.mapError { $0 as Error }) }
        }
        return try await promise.futureResult.get()
    }

    struct ManifestError: Error, CustomStringConvertible {
        var description: String
    }

    static func parseManifest(_ value: JSONValue) throws -> PluginManifest {
        guard case .object = value else { throw ManifestError(description: "the answer is not an object") }
        var manifest = PluginManifest()
        if case .array(let options)? = value["options"] {
            for option in options {
                guard case .string(let name)? = option["name"] else { throw ManifestError(description: "an option has no name") }
                var type = "string"
                if case .string(let t)? = option["type"] { type = t }
                var multi = false
                if case .bool(let m)? = option["multi"] { multi = m }
                manifest.options.append(.init(name: name, type: type, defaultValue: option["default"], multi: multi))
            }
        }
        if case .array(let methods)? = value["rpcmethods"] {
            for method in methods {
                guard case .string(let name)? = method["name"] else { throw ManifestError(description: "an rpcmethod has no name") }
                manifest.rpcMethods.append(name)
            }
        }
        if case .array(let topics)? = value["subscriptions"] {
            for topic in topics { if case .string(let t) = topic { manifest.subscriptions.insert(t) } }
        }
        if case .array(let hooks)? = value["hooks"] {
            for hook in hooks {
                // Old manifests list hook names as strings; newer ones as objects with filters.
                let name: String
                var filters: Set<UInt16>?
                switch hook {
                case .string(let n): name = n
                case .object:
                    guard case .string(let n)? = hook["name"] else { throw ManifestError(description: "a hook has no name") }
                    name = n
                    if case .array(let list)? = hook["filters"] {
                        filters = []
                        for item in list {
                            if let number = Plugin.integer(item), let type = UInt16(exactly: number) {
                                filters!.insert(type)
                            } else if case .string(let messageName) = item, let type = MessageCatalogue.type(named: messageName) {
                                filters!.insert(type)
                            } else {
                                throw ManifestError(description: "hook \(name): filter \(item) is not a message type (a number 0-65535 or a BOLT message name)")
                            }
                        }
                    }
                default: throw ManifestError(description: "a hook is neither a name nor an object")
                }
                guard hookNames.contains(name) else {
                    throw ManifestError(description: "hook '\(name)' is not one lnrr offers; lnrr offers \(hookNames.joined(separator: ", ")) (docs/plugins.md)")
                }
                manifest.hooks.append(.init(name: name, filters: filters))
            }
        }
        return manifest
    }

    /// A `--plugin-option` value as the option's declared type.
    static func optionValue(_ text: String, type: String) -> JSONValue {
        switch type {
        case "int": return Int64(text).map { .int($0) } ?? .string(text)
        case "bool", "flag": return .bool(text == "true" || text == "1" || text.isEmpty)
        default: return .string(text)
        }
    }

    private func pluginGone(_ plugin: Plugin, _ why: String) {
        // Give the process a moment to end so its status and last stderr lines are in the message.
        plugin.waitForExit(atMost: .milliseconds(300)).whenComplete { [logger] _ in
            var text = "plugin \(plugin.name) \(why); traffic continues without it (its hooks are skipped, its RPC methods fail)"
            if let status = plugin.exitStatus, !why.contains("status") { text += "; exit status \(status)" }
            let tail = plugin.stderrTail.split(separator: "\n").suffix(5).joined(separator: " | ")
            if !tail.isEmpty { text += "; last stderr: \(tail)" }
            logger.error("\(text)")
        }
    }

    /// Stops every plugin (lnrr is shutting down).
    public func stop() async {
        let plugins = self.plugins
        try? await loop.flatSubmit {
            EventLoopFuture.andAllComplete(plugins.map { $0.stop(grace: .milliseconds(1000)) }, on: self.loop)
        }.get()
    }

    // MARK: Hooks

    public func consults(type: UInt16) -> Bool {
        messageFilter.contains(type) || (type >= 32768 && customFilter.contains(type))
    }

    /// Per session and direction: answers not yet released, oldest first.
    private struct Stream {
        var base: UInt64 = 0
        var slots = CircularBuffer<(outcome: HookOutcome?, answer: @Sendable (HookOutcome) -> Void)>()
    }

    private struct StreamKey: Hashable {
        var session: Int
        var direction: Direction
    }

    private var streams: [StreamKey: Stream] = [:]

    public func ask(_ query: HookQuery, answer: @escaping @Sendable (HookOutcome) -> Void) {
        loop.execute { [self] in
            let key = StreamKey(session: query.session, direction: query.direction)
            // Mutated in place: copying a stream out of the dictionary would copy its whole buffer.
            let sequence = streams[key, default: Stream()].base + UInt64(streams[key, default: Stream()].slots.count)
            streams[key, default: Stream()].slots.append((nil, answer))
            let chain = self.chain(for: query.type)
            run(chain, 0, query, HookOutcome(.continue)) { [self] outcome in
                settle(key, sequence, outcome)
            }
        }
    }

    /// Chains already worked out, by message type (a handful of types in practice).
    private var chains: [UInt16: [(Plugin, String)]] = [:]

    /// The (plugin, hook) pairs a message of `type` goes through, in `--plugin` order.
    private func chain(for type: UInt16) -> [(Plugin, String)] {
        if let known = chains[type] { return known }
        var chain: [(Plugin, String)] = []
        for plugin in plugins {
            for hook in plugin.manifest.hooks where hook.filters?.contains(type) ?? true {
                if hook.name == "custommsg" && type < 32768 { continue }
                chain.append((plugin, hook.name))
            }
        }
        if chains.count < 4096 { chains[type] = chain }
        return chain
    }

    /// Calls each hook in turn while they answer continue; the first drop or replace ends the chain.
    /// Injections from every answer are kept.
    private func run(_ chain: [(Plugin, String)], _ index: Int, _ query: HookQuery, _ sofar: HookOutcome, _ done: @escaping (HookOutcome) -> Void) {
        guard index < chain.count else { done(sofar); return }
        let (plugin, hook) = chain[index]
        guard plugin.isAlive else { run(chain, index + 1, query, sofar, done); return }
        plugin.call(hook, renderedParams: Self.params(hook, query), timeout: configuration.hookTimeout) { [self] result in
            var outcome = sofar
            switch result {
            case .success(let value):
                do {
                    let answer = try Self.parseAnswer(value, hook: hook)
                    outcome.injectBefore += answer.injectBefore
                    outcome.injectAfter += answer.injectAfter
                    if answer.result != .continue {
                        outcome.result = answer.result
                        outcome.decidedBy = plugin.name
                        done(outcome)
                        return
                    }
                } catch {
                    logger.warning("plugin \(plugin.name) answered \(hook) with \(error); the message continues")
                    outcome.problem = "plugin \(plugin.name): \(error)"
                }
            case .failure(let error):
                if case .gone = error {} else {
                    logger.warning("plugin \(plugin.name) \(hook) hook: \(error); the message continues")
                }
                outcome.problem = "plugin \(plugin.name): \(error)"
            }
            run(chain, index + 1, query, outcome, done)
        }
    }

    /// Records an answer and releases every answer that is now at the head of its stream.
    private func settle(_ key: StreamKey, _ sequence: UInt64, _ outcome: HookOutcome) {
        guard let base = streams[key]?.base else { return }
        let offset = Int(sequence - base)
        streams[key]!.slots[streams[key]!.slots.index(streams[key]!.slots.startIndex, offsetBy: offset)].outcome = outcome
        var released: [(HookOutcome, @Sendable (HookOutcome) -> Void)] = []
        while let head = streams[key]!.slots.first, let ready = head.outcome {
            _ = streams[key]!.slots.removeFirst()
            streams[key]!.base += 1
            released.append((ready, head.answer))
        }
        if streams[key]!.slots.isEmpty { streams[key] = nil }
        for (outcome, answer) in released { answer(outcome) }
    }

    /// The hook's params as JSON text, through lnrr's one JSON writer (`JSONValue`).
    static func params(_ hook: String, _ query: HookQuery) -> String {
        let peer: JSONValue = query.peerID.map { .string($0) } ?? .null
        let payload = JSONValue.string(HexString.encode(query.message))
        let value: JSONValue
        if hook == "custommsg" {
            // Exactly Core Lightning's parameters.
            value = .object([("peer_id", peer), ("payload", payload)])
        } else {
            value = .object([
                ("session", .int(query.session)), ("direction", .string(query.direction.rawValue)), ("peer_id", peer),
                ("phase", .string(query.phase)), ("type", .int(Int(query.type))),
                ("name", .string(MessageCatalogue.displayName(of: query.type))), ("payload", payload),
            ])
        }
        var text = ""
        text.reserveCapacity(query.message.count * 2 + 200)
        value.write(into: &text)
        return text
    }

    struct AnswerError: Error, CustomStringConvertible {
        var description: String
    }

    /// Parses a hook's `result` (docs/plugins.md lists the shapes).
    static func parseAnswer(_ value: JSONValue, hook: String) throws -> HookOutcome {
        guard case .string(let result)? = value["result"] else {
            throw AnswerError(description: "an answer without \"result\": \(value.description.prefix(80))")
        }
        var outcome: HookOutcome
        switch result {
        case "continue": outcome = HookOutcome(.continue)
        case "drop": outcome = HookOutcome(.drop)
        case "replace":
            outcome = HookOutcome(.replace(try message(value, what: "replace")))
        default:
            throw AnswerError(description: "an unknown result '\(result)' (continue, drop or replace)")
        }
        for (key, keyPath) in [("inject_before", \HookOutcome.injectBefore), ("inject_after", \HookOutcome.injectAfter)] {
            guard let list = value[key] else { continue }
            guard case .array(let items) = list else { throw AnswerError(description: "\(key) must be a list of messages") }
            for item in items { outcome[keyPath: keyPath].append(try message(item, what: key)) }
        }
        return outcome
    }

    /// A message given as `"payload": HEX`, a bare hex string, or `{"name", "fields"}`.
    static func message(_ value: JSONValue, what: String) throws -> [UInt8] {
        var hex: String?
        if case .string(let h) = value { hex = h } else if case .string(let h)? = value["payload"] { hex = h }
        if let hex {
            guard let bytes = HexString.decode(hex), bytes.count >= 2, bytes.count <= 65535 else {
                throw AnswerError(description: "\(what): \(hex.prefix(40).debugDescription) is not hex of a 2-byte type and payload (at most 65535 bytes)")
            }
            return bytes
        }
        if case .string(let name)? = value["name"] {
            do { return try WireCodec.encode(name: name, fields: value["fields"] ?? .object([])) } catch {
                throw AnswerError(description: "\(what): cannot encode \(name): \(error)")
            }
        }
        throw AnswerError(description: "\(what) needs a message: \"payload\": HEX, or \"name\" and \"fields\"")
    }

    // MARK: RPC methods

    /// The RPC methods plugins declared, for the control socket.
    public var rpcMethods: [String] { plugins.flatMap(\.manifest.rpcMethods) }

    /// Whether a plugin serves `method`.
    public func serves(_ method: String) -> Bool {
        plugins.contains { $0.manifest.rpcMethods.contains(method) }
    }

    /// Calls a plugin's RPC method (the first plugin that declared it) and returns its result.
    public func callMethod(_ method: String, params: JSONValue) async throws -> JSONValue {
        guard let plugin = plugins.first(where: { $0.manifest.rpcMethods.contains(method) }) else {
            throw PluginCallError.rpc(code: -32601, message: "no plugin serves \(method)")
        }
        return try await Self.call(plugin, method, params, timeout: configuration.startupTimeout)
    }

    // MARK: Notifications

    /// Forwards the proxy's session events to plugins that subscribed to lnrr's topics. Costs
    /// nothing per message when no plugin subscribed.
    public func attach(to proxy: ProxyServer) {
        guard wantsNotifications else { return }
        _ = proxy.context.events.subscribe { [weak self] text in self?.notify(event: text) }
    }

    /// Turns a control-socket event (ControlEvents) into a notification for subscribed plugins.
    func notify(event text: String) {
        guard text.contains("\"event\":\"session-") || text.contains("\"event\":\"phase\"") || text.contains("\"event\":\"rule\"") else { return }
        guard let event = try? JSONValue.parse(text), case .string(let kind)? = event["event"] else { return }
        let topic: String
        switch kind {
        case "session-start": topic = "lnrr_session_start"
        case "session-end": topic = "lnrr_session_end"
        case "phase": topic = "lnrr_phase"
        case "rule": topic = "lnrr_rule"
        default: return
        }
        guard case .object(let pairs) = event else { return }
        let body = JSONValue.object(pairs.filter { $0.0 != "event" })
        loop.execute { [self] in
            for plugin in plugins where plugin.isAlive && (plugin.manifest.subscriptions.contains(topic) || plugin.manifest.subscriptions.contains("*")) {
                // Core Lightning's current shape: the payload under the topic's name.
                plugin.notify(topic, .object([(topic, body)]))
            }
        }
    }
}

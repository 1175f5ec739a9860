import LNRecording
import LNRelay
import LNWire

/// What `lnrr export` writes. An enum so that other formats (an lnprototest event list) can join.
public enum ExportFormat: String, Sendable, CaseIterable {
    /// A standalone pytest file on pyln-proto.
    case pytest
}

/// Turns the replay plan of one side of some recordings into a standalone test of the live node:
/// the same steps `lnrr replay` would take (what the played side's peer received is sent, what the
/// live node sent is asserted), written in another language so the recording can run where lnrr
/// does not.
public enum TestExport {
    /// The pytest file for playing `side` of `segments` (from `ReplayPlan.segments`).
    ///
    /// - `matcher`: the match mode and the fields `fields` mode leaves out;
    /// - `ignore`: types neither sent nor expected (pings are answered);
    /// - `command`: how the file was made, for its docstring;
    /// - `write`: takes the text a piece at a time (about 64 KiB), as the steps are read from the
    ///   recordings, so memory does not grow with them.
    public static func pytest(segments: [ReplaySegment], side: Side, matcher: MessageMatcher, ignore: TypeFilter,
                              command: String, write: (String) throws -> Void) throws {
        var out = "\"\"\"Replay of side \(side.rawValue) of a recorded Lightning session against a live node, as a pytest.\n\n"
        for segment in segments {
            out += "Recording \(segment.path)"
            if let m = segment.metadata {
                out += ":\n  session \(m.sessionID), started \(m.started), recorded by lnrr \(m.lnrrVersion)\n"
                out += "  node a \(m.nodeA ?? "(not known)")\n  node b \(m.nodeB)\n"
                out += "  proxy listened on \(m.listen), upstream \(m.upstream)\n"
                if let rules = m.rulesFile { out += "  rules \(rules)\n" }
            } else {
                out += " (no metadata)\n"
            }
            if segment.truncated { out += "  truncated: it replays up to its last complete message\n" }
        }
        let ignoredFields = matcher.ignoredFields.sorted()
        out += """

            Made by: \(command)
            The test plays node \(side.rawValue) and the live node plays node \(side.other.rawValue). It sends what \(side.other.rawValue) \
            received in the recording and asserts what the live node must answer, matched by \(matcher.mode.rawValue)\
            \(matcher.mode == .fields ? " (fields equal except: " + ignoredFields.joined(separator: ", ") + ")" : "").
            Types \(ignore.ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")) \
            are neither sent nor expected (pings are answered). Connection-level messages the node sends on \
            its own schedule (peer storage, gossip, ping/pong, warning to the whole connection) are matched \
            by type wherever they come in their session; everything else in the recorded order. As \
            in `lnrr replay`, the live node's temporary_channel_id and channel_id (v1 from the \
            funding outpoint, v2 from the revocation basepoints) are learned and used in place of \
            the recorded ones (LNRR_BIND=off sends the recorded ids); signatures cannot adapt, so \
            for more than `type` matching start the live node deterministically \
            (docs/reproducing-bugs.md).

            The live node, by environment variable or, with this file loaded as a plugin
            (`pytest -p MODULE FILE`), by pytest option:
              LNRR_CONNECT=NODEID@HOST:PORT  --lnrr-connect  dial the live node
              LNRR_LISTEN=HOST:PORT          --lnrr-listen   let the live node dial in
              LNRR_KEY=FILE                  --lnrr-key      the played node's secret (64 hex digits)
              LNRR_TIMEOUT=SECONDS           --lnrr-timeout  wait for each expected message (default 10)
              LNRR_BIND=on|off               --lnrr-bind     use the live node's channel ids (default on)
            \"\"\"

            """
        out += pytestRuntime
        out += "SIDE = \(pythonString(side.rawValue))\n"
        out += "MATCH = \(pythonString(matcher.mode.rawValue))\n"
        out += "IGNORED_FIELDS = {" + ignoredFields.map(pythonString).joined(separator: ", ") + "}\n"
        out += "IGNORED_TYPES = [" + ignore.ranges.map { "(\($0.lowerBound), \($0.upperBound))" }.joined(separator: ", ") + "]\n"
        let used = segments.reduce(into: Set<UInt16>()) { $0.formUnion($1.stepTypes) }
        out += "# Where each message type carries a channel id (offsets count the 2-byte type), from the BOLT CSVs.\n"
        out += "ID_SLOTS = {" + used.sorted().compactMap { type -> String? in
            let slots = IdentifierBinding.slots(of: type)
            return slots.isEmpty ? nil : "\(type): [" + slots.map { "\($0.offset)" }.joined(separator: ", ") + "]"
        }.joined(separator: ", ") + "}\n"
        out += "# The BOLT CSV rows of the messages this test decodes (pyln-proto's MessageNamespace reads them).\n"
        out += "CSV = \"\"\"\n" + csvRows(for: used).joined(separator: "\n") + "\n\"\"\"\n\n"
        out += "# One list per recorded connection: (kind, step, direction, name, hex).\nSESSIONS = [\n"
        var number = 1
        for segment in segments {
            out += "    [  # \(segment.path)\n"
            var phases = PhaseTracker()
            let steps = try segment.makeStepStream()
            while let step = try steps.next() {
                defer { number += 1 }
                if out.utf8.count >= 64 * 1024 {
                    try write(out)
                    out = ""
                }
                let name = step.type.map(describeType) ?? (step.kind == .close ? "(close)" : "(the live node closes)")
                if step.type != nil {
                    let seen = phases.observe(step.bytes, direction: step.direction)
                    for change in seen.changes { out += "        # phase \(change.description)\n" }
                }
                let kind = switch step.kind {
                case .send: "send"
                case .expect: "expect"
                case .expectClose: "expect_close"
                case .close: "close"
                }
                let note = step.note.map { "  # \($0)" } ?? ""
                out += "        (\(pythonString(kind)), \(number), \(pythonString(step.direction.rawValue)), \(pythonString(name)), "
                    + "\(pythonString(HexString.encode(step.bytes)))),\(note)\n"
            }
            out += "    ],\n"
        }
        out += "]\n"
        try write(out)
    }

    private static func pythonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 || scalar.value > 0x7e {
                    out += "\\U" + String(repeating: "0", count: 8 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    // MARK: CSV rows

    /// Fundamental types pyln-proto's MessageNamespace knows, by their CSV name (`u8` is its `byte`).
    private static let pylnTypes: [Fundamental: String] = [
        .byte: "byte", .u8: "byte", .u16: "u16", .u32: "u32", .u64: "u64", .s8: "s8", .s16: "s16", .s32: "s32", .s64: "s64",
        .tu16: "tu16", .tu32: "tu32", .tu64: "tu64", .bigsize: "bigsize", .point: "point", .signature: "signature",
        .sha256: "sha256", .chain_hash: "chain_hash", .channel_id: "channel_id", .short_channel_id: "short_channel_id",
        .utf8: "utf8",
    ]

    /// The CSV rows (BOLT format) for these message types and every subtype and TLV stream they use,
    /// definitions before uses. A message using a type pyln-proto cannot read is left out; the test
    /// compares its bytes instead.
    static func csvRows(for types: Set<UInt16>) -> [String] {
        var subtypeRows: [String] = [], streamRows: [String] = [], messageRows: [String] = []
        var doneSubtypes = Set<String>(), doneStreams = Set<String>()

        func typeName(_ kind: FieldKind) -> String? {
            switch kind {
            case .fundamental(let f): return pylnTypes[f]
            case .subtype(let name): return addSubtype(name) ? name : nil
            case .tlvStream(let name): return addStream(name) ? name : nil
            case .opaque: return nil
            }
        }
        func count(_ c: FieldCount) -> String {
            switch c {
            case .one: ""
            case .fixed(let n): "\(n)"
            case .field(let name): name
            case .rest: "..."
            }
        }
        func rows(_ fields: [FieldSpec], prefix: String) -> [String]? {
            var out: [String] = []
            for field in fields {
                guard let type = typeName(field.kind) else { return nil }
                out.append("\(prefix),\(field.name),\(type),\(count(field.count))")
            }
            return out
        }
        func addSubtype(_ name: String) -> Bool {
            if doneSubtypes.contains(name) { return true }
            guard let spec = MessageCatalogue.subtype(named: name) else { return false }
            doneSubtypes.insert(name)
            guard let fields = rows(spec.fields, prefix: "subtypedata,\(name)") else { doneSubtypes.remove(name); return false }
            subtypeRows += ["subtype,\(name)"] + fields
            return true
        }
        func addStream(_ name: String) -> Bool {
            if doneStreams.contains(name) { return true }
            guard let spec = MessageCatalogue.tlvStream(named: name) else { return false }
            doneStreams.insert(name)
            var out: [String] = []
            for record in spec.records {
                // A record pyln cannot read is left out: pyln then keeps it as unknown bytes.
                guard let fields = rows(record.fields, prefix: "tlvdata,\(name),\(record.name)") else { continue }
                out += ["tlvtype,\(name),\(record.name),\(record.type)"] + fields
            }
            streamRows += out
            return true
        }
        for spec in MessageCatalogue.messages where types.contains(spec.type) {
            guard let fields = rows(spec.fields, prefix: "msgdata,\(spec.name)") else { continue }
            messageRows += ["msgtype,\(spec.name),\(spec.type)"] + fields
        }
        return subtypeRows + streamRows + messageRows
    }
}

/// The part of every exported pytest that does the work; the data (SESSIONS, ...) follows it.
private let pytestRuntime = #"""
import collections
import hashlib
import io
import os
import socket
import struct

import pytest
from pyln.proto.message import MessageNamespace
from pyln.proto.wire import LightningServerSocket, PrivateKey, PublicKey, connect


def pytest_addoption(parser):
    group = parser.getgroup("lnrr", "the live node of an exported lnrr recording")
    group.addoption("--lnrr-connect", metavar="NODEID@HOST:PORT", help="dial the live node")
    group.addoption("--lnrr-listen", metavar="HOST:PORT", help="let the live node dial in")
    group.addoption("--lnrr-key", metavar="FILE", help="the played node's secret, 64 hex digits")
    group.addoption("--lnrr-timeout", metavar="SECONDS", help="wait for each expected message (default 10)")
    group.addoption("--lnrr-bind", metavar="on|off", help="use the live node's channel ids (default on)")


def setting(config, name, default=None):
    value = None
    try:
        value = config.getoption("--lnrr-" + name)
    except ValueError:
        pass  # the file was not loaded as a plugin: environment only
    return value or os.environ.get("LNRR_" + name.upper(), default)


def message_type(message):
    return struct.unpack(">H", message[:2])[0] if len(message) >= 2 else None


def ignored(t):
    return any(low <= t <= high for low, high in IGNORED_TYPES)


def connection_scheduled(message):
    """Sent by a node on its own schedule: peer storage, ping/pong, gossip, a warning to the whole connection."""
    t = message_type(message)
    return t in (7, 9, 18, 19, 256, 257, 258, 261, 262, 263, 264, 265) or (t == 1 and message[2:34] == bytes(32))


def flatten(value, path, out):
    if isinstance(value, dict):
        for key, child in value.items():
            if key not in IGNORED_FIELDS:
                flatten(child, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list) and not all(isinstance(x, int) for x in value):
        for i, child in enumerate(value):
            flatten(child, f"{path}[{i}]", out)
    else:
        out[path] = bytes(value).hex() if isinstance(value, (bytes, list)) else value


NAMESPACE = None


def decode(message):
    global NAMESPACE
    if NAMESPACE is None:
        NAMESPACE = MessageNamespace(CSV.strip().splitlines())
    spec = NAMESPACE.get_msgtype_by_number(message_type(message))
    if spec is None:
        return None
    stream = io.BytesIO(message[2:])
    try:
        fields = spec.read(stream, {})
    except Exception:
        return None
    if fields is None:
        return None
    out = {}
    flatten(fields, "", out)
    rest = stream.read()
    if rest:
        out["(trailing bytes)"] = rest.hex()
    return out


def byte_difference(expected, got):
    common = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
    return f"bytes differ from offset {common} (recorded {expected.hex()}, live {got.hex()})"


def difference(expected, got):
    """None when `got` matches `expected` under MATCH; otherwise what differs."""
    if message_type(expected) != message_type(got):
        return f"expected type {message_type(expected)}, got type {message_type(got)} ({got.hex()})"
    if MATCH == "type" or expected == got:
        return None
    if MATCH == "exact":
        return byte_difference(expected, got)
    left, right = decode(expected), decode(got)
    if left is None or right is None:
        return byte_difference(expected, got)
    differ = [f"{k}: recorded {left.get(k, '(absent)')}, live {right.get(k, '(absent)')}"
              for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]
    return "; ".join(differ) or None


TIMED_OUT = object()


class Binding:
    """The live node's channel ids for the recorded ones, learned as `lnrr replay --bind` learns them:
    a temporary_channel_id from the open_channel(2) the live node sent; a channel_id from the funding
    outpoint in funding_created (v1) or from both revocation basepoints (v2, SHA-256 of the lesser
    then the greater)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.ids = {}
        self.basepoints = {}

    def bind(self, recorded, live):
        if self.enabled and recorded != live and recorded not in self.ids and any(recorded) and any(live):
            self.ids[recorded] = live

    def rewrite(self, message):
        out = bytearray(message)
        for offset in ID_SLOTS.get(message_type(message), ()):
            live = self.ids.get(bytes(message[offset:offset + 32]))
            if live is not None:
                out[offset:offset + 32] = live
        return bytes(out)

    @staticmethod
    def v1(funding_created):
        txid, index = funding_created[34:66], funding_created[66:68]
        return txid[:30] + bytes(a ^ b for a, b in zip(txid[30:], index))

    def observe(self, recorded, live):
        """One step's recorded message and the live one (same type)."""
        t = message_type(recorded)
        if t in (32, 64) and len(recorded) >= 66 and len(live) >= 66:
            self.bind(recorded[34:66], live[34:66])
        if t == 34 and len(recorded) >= 68 and len(live) >= 68:
            self.bind(self.v1(recorded), self.v1(live))
        if t in (64, 65):
            offset = 2 + 145 if t == 64 else 2 + 105
            self.basepoints[t] = (recorded[offset:offset + 33], live[offset:offset + 33])
            if 64 in self.basepoints and 65 in self.basepoints:
                (ro, lo), (ra, la) = self.basepoints[64], self.basepoints[65]
                self.bind(hashlib.sha256(min(ro, ra) + max(ro, ra)).digest(),
                          hashlib.sha256(min(lo, la) + max(lo, la)).digest())


class LiveNode:
    """One BOLT 8 connection to the live node."""

    def __init__(self, config):
        key = setting(config, "key")
        if not key:
            pytest.fail("set LNRR_KEY (or --lnrr-key) to the key file of the node this test plays")
        with open(key) as f:
            secret = PrivateKey(bytes.fromhex(f.read().strip()))
        target, listen = setting(config, "connect"), setting(config, "listen")
        if bool(target) == bool(listen):
            pytest.fail("set one of LNRR_CONNECT=NODEID@HOST:PORT (dial the live node) or LNRR_LISTEN=HOST:PORT (let it dial)")
        self.timeout = float(setting(config, "timeout", "10"))
        if target:
            node_id, _, hostport = target.partition("@")
            host, _, port = hostport.rpartition(":")
            self.conn = connect(secret, PublicKey(bytes.fromhex(node_id)), host.strip("[]"), int(port))
        else:
            host, _, port = listen.rpartition(":")
            server = LightningServerSocket(secret)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host.strip("[]"), int(port)))
            server.listen(1)
            server.settimeout(max(30.0, self.timeout))
            try:
                self.conn, _ = server.accept()
            except TimeoutError:
                pytest.fail(f"the live node did not dial {listen} within {max(30.0, self.timeout)} s")
            finally:
                server.close()
        self.conn.connection.settimeout(self.timeout)

    def send(self, message):
        self.conn.send_message(message)

    def receive(self):
        """The next message not ignored (pings answered); None once the node closed; TIMED_OUT."""
        while True:
            try:
                message = self.conn.read_message()
            except TimeoutError:
                return TIMED_OUT
            except (OSError, ValueError, struct.error):
                return None
            t = message_type(message)
            if t is None:
                return message
            if ignored(t):
                if t == 18 and len(message) >= 4:
                    n = struct.unpack(">H", message[2:4])[0]
                    if n < 65532:
                        self.send(struct.pack(">HH", 19, n) + bytes(n))
                continue
            return message

    def close(self):
        self.conn.connection.close()


def play(node, steps, binding):
    __tracebackhide__ = True  # a failure names its step; the data around it is noise
    # Connection-level messages still to come in this session, by type: taken wherever they arrive.
    floating = collections.Counter(message_type(bytes.fromhex(h)) for kind, _, _, _, h in steps
                                   if kind == "expect" and connection_scheduled(bytes.fromhex(h)))

    def next_message(step, what):
        __tracebackhide__ = True
        while True:
            got = node.receive()
            if got is TIMED_OUT:
                pytest.fail(f"step {step}: no {what} within {node.timeout} s")
            if got is not None and connection_scheduled(got) and floating[message_type(got)] > 0:
                floating[message_type(got)] -= 1
                continue
            return got

    for kind, step, direction, name, hexmsg in steps:
        message = bytes.fromhex(hexmsg)
        if kind == "send":
            live = binding.rewrite(message)
            binding.observe(message, live)
            try:
                node.send(live)
            except OSError as e:
                pytest.fail(f"step {step}: {direction} {name} could not be sent: {e}")
        elif kind == "expect":
            if connection_scheduled(message):
                continue  # counted in `floating`
            got = next_message(step, name)
            if got is None:
                pytest.fail(f"step {step}: the live node closed the connection instead of sending {name}")
            if message_type(got) == message_type(message):
                binding.observe(message, got)
            problem = difference(binding.rewrite(message), got)
            if problem:
                pytest.fail(f"step {step}: {direction} {name}: {problem}")
        elif kind == "expect_close":
            got = next_message(step, "close")
            if got is not None:
                pytest.fail(f"step {step}: expected the live node to close the connection, got {got.hex()}")
        elif kind == "close":
            node.close()
    left = [t for t, n in floating.items() for _ in range(n)]
    if left:
        pytest.fail(f"connection-level messages of types {left} were recorded but never came")


def test_live_node_behaves_as_recorded(pytestconfig):
    __tracebackhide__ = True
    # One binding for all sessions: a reconnect re-establishes the same channels.
    binding = Binding(setting(pytestconfig, "bind", "on") != "off")
    for steps in SESSIONS:
        node = LiveNode(pytestconfig)
        try:
            play(node, steps, binding)
        finally:
            node.close()


"""#

"""lnrr's Wireshark dissector (tools/wireshark/lightning.lua) in tshark, cross-checked with lnrr's decoder.

Two decoders of the same BOLT CSVs: Swift (`lnrr decode --json`) and Lua (tshark with the dissector).
Messages for every type in the catalogue, with every TLV record populated, are built by `lnrr encode`
from pyln-proto's view of the CSVs, sent by pyln-proto node a through `lnrr record` to pyln-proto node
b, and the recording lnrr wrote is dissected by tshark. Every field tshark prints must equal what lnrr
decodes from the same bytes; malformed messages must come out as expert-info errors, never Lua errors.
"""
import json
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO, run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json
from test_wire_pyln import Samples, namespace

EXAMPLE = REPO / "recordings" / "examples" / "custommsg-during-closing.pcapng"
# Fields the dissector adds about a message rather than from its bytes' fields.
META = {"lightning.direction", "lightning.type", "lightning.name", "lightning.kind", "lightning.length",
        "lightning.phase", "lightning.phase.change", "lightning.delivery", "lightning.rule", "lightning.note",
        "lightning.extra", "lightning.rest", "lightning.body"}


def tshark():
    path = shutil.which("tshark")
    if not path:
        raise RuntimeError("tshark is not installed: tools/test installs it (apt-get install tshark)")
    return path


@pytest.fixture
def lua(lnrr, tmp_path):
    """The dissector as an installed lnrr gives it (embedded in the binary), checked equal to the repo's."""
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    path = Path(run(lnrr, "wireshark", "--print-path", env=env).stdout.strip())
    assert path.is_file() and str(path).startswith(str(tmp_path))
    assert path.read_text() == (REPO / "tools/wireshark/lightning.lua").read_text()
    return path


def dissect(lua, pcap, *args):
    r = subprocess.run([tshark(), "-X", f"lua_script:{lua}", "-r", str(pcap), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Lua: Error" not in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr
    return r.stdout


def fields(lua, pcap, names, display_filter=None):
    args = ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for n in names:
        args += ["-e", n]
    if display_filter:
        args += ["-Y", display_filter]
    return [line.split("\t") for line in dissect(lua, pcap, *args).splitlines()]


def pdml_packets(lua, pcap):
    """Per packet: (frame number, the <proto name="lightning"> or "lnrr" element)."""
    root = ET.fromstring(dissect(lua, pcap, "-T", "pdml"))
    out = []
    for packet in root.iter("packet"):
        number = int(next(f for f in packet.iter("field") if f.get("name") == "frame.number").get("show"))
        proto = next((p for p in packet.findall("proto") if p.get("name") in ("lightning", "lnrr")), None)
        out.append((number, proto))
    return out


def children(el):
    return [c for c in el if c.tag == "field" and not c.get("name", "").startswith("_ws")]


def first(el, name):
    return next((c for c in el.iter("field") if c.get("name") == name), None)


def experts(el):
    """(severity, message) of every expert info under el."""
    out = []
    for e in el.iter("field"):
        if e.get("name") == "_ws.expert":
            sev = next((c.get("showname") for c in e if c.get("name") == "_ws.expert.severity"), "")
            message = next((c.get("show") for c in e if c.get("name") == "_ws.expert.message"), "")
            out.append((sev.split(": ")[-1], message))
    return out


# ---------------------------------------------------------------------------------------------
# The cross-check: lnrr's JSON and tshark's tree, field by field, in order.

def json_pairs(obj):
    """A JSON object of fields as (name, value) pairs, arrays spread into repeated names (as tshark shows them)."""
    out = []
    for k, v in obj.items():
        out += [(k, e) for e in v] if isinstance(v, list) else [(k, v)]
    return out


def tshark_pairs(el, skip=()):
    out = []
    for c in children(el):
        name = c.get("name")
        if name in skip:
            continue
        key = first(c, "lightning.tlv.type").get("show") if name == "lightning.tlv" else name.rsplit(".", 1)[1]
        out.append((key, c))
    return out


def compare(value, el, path):
    """Asserts that tshark's field element `el` shows lnrr's JSON `value`."""
    if isinstance(value, dict) and set(value) == {"hex", "bits", "names"}:
        # A BOLT 9 feature bitfield: bytes, one .bit item per set bit, a named item per known bit.
        assert el.get("value", "") == value["hex"], path
        kids = children(el)
        bits = [int(c.get("show")) for c in kids if c.get("name").endswith(".bit")]
        named = {int(c.get("show")): c.get("name").rsplit(".", 1)[1] for c in kids if not c.get("name").endswith(".bit")}
        assert sorted(bits) == sorted(int(b) for b in value["bits"]), path
        names = [f"{named[b]} ({'required' if b % 2 == 0 else 'optional'})" if b in named else f"bit {b}" for b in bits]
        assert sorted(names) == sorted(value["names"]), path
        return 1 + len(kids)
    if isinstance(value, dict):
        # A subtype, a TLV stream (records by name, unknown ones by type number) or a record's fields.
        theirs = tshark_pairs(el, skip={"lightning.tlv.type", "lightning.tlv.length"})
        ours = json_pairs(value)
        assert [k for k, _ in theirs] == [k for k, _ in ours], path
        n = 1
        for (key, sub), (_, v) in zip(theirs, ours):
            if sub.get("name") == "lightning.tlv":
                assert first(sub, "lightning.tlv.value").get("value", "") == v, f"{path}.{key}"
                n += 1
            else:
                n += compare(v, sub, f"{path}.{key}")
        return n
    assert not children(el), f"{path}: tshark shows sub-fields under a plain value"
    expected = str(value).lower() if isinstance(value, bool) else str(value)
    assert expected in (el.get("show"), el.get("value", "")), f"{path}: tshark {el.get('show')!r}/{el.get('value')!r}, lnrr {value!r}"
    return 1


def json_leaves(value):
    if isinstance(value, dict):
        return 1 if set(value) == {"hex", "bits", "names"} else sum(json_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(json_leaves(v) for v in value)
    return 1


def decode_all(lnrr, messages):
    r = subprocess.run([lnrr, "decode", "--json"], input="\n".join(m.hex() for m in messages),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    decoded = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(decoded) == len(messages)
    return decoded


# ---------------------------------------------------------------------------------------------
# A recording with every message type, written by lnrr between two pyln-proto nodes.

def encode(lnrr, name, fields):
    return bytes.fromhex(run(lnrr, "encode", name, json.dumps(fields)).stdout.strip())


def every_type(lnrr):
    ns = namespace()
    types = sorted((m for m in (ns.get_msgtype_by_number(n) for n in range(0, 1024)) if m), key=lambda m: m.number)
    assert len(types) == 50, [m.name for m in types]
    samples = Samples(16)
    out = [encode(lnrr, m.name, samples.fields(m.fields)) for m in types]
    return [m.name for m in types], out


def malformed_cases(lnrr):
    """(label, bytes, what the expert info must say)."""
    open_channel = encode(lnrr, "open_channel", Samples(3).fields(namespace().get_msgtype("open_channel").fields))
    init_tlvs = lambda tlv: msg(16, b"\x00\x00\x00\x00" + tlv)  # noqa: E731
    return [
        ("truncated", open_channel[:100], "truncated"),
        ("tlv order", init_tlvs(bytes.fromhex("0300") + bytes.fromhex("0100")), "types must increase"),
        ("duplicate tlv", init_tlvs(bytes.fromhex("0100") + bytes.fromhex("0100")), "duplicate TLV record type 1"),
        ("non-minimal bigsize", init_tlvs(bytes.fromhex("fd000100")), "non-canonical bigsize"),
        ("unknown even tlv", init_tlvs(bytes.fromhex("0400")), "unknown even TLV record type 4"),
        ("tlv too long", init_tlvs(bytes.fromhex("0105aabb")), "claims 5 bytes"),
        ("runt", b"\x00", "at least its 2-byte type"),
    ]


@pytest.fixture
def session(lnrr, keys, procs, tmp_path):
    """Records one session: init both ways, every message type, filter probes, malformed messages,
    unknown and custom types. Returns (recording, list of (label, bytes) a sent after init)."""
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT)
    assert b.read_message() == INIT
    b.send_message(INIT)
    assert a.read_message() == INIT
    names, messages = every_type(lnrr)
    sent = list(zip(names, messages))
    # Probes for the documented filters: features with option_static_remotekey (bit 13) and bit 101.
    sent.append(("init+features", encode(lnrr, "init", {"globalfeatures": "", "features": "20" + "00" * 11 + "2000", "tlvs": {}})))
    sent.append(("big open_channel", encode(lnrr, "open_channel", dict(
        Samples(5).fields(namespace().get_msgtype("open_channel").fields), funding_satoshis=100001))))
    sent.append(("extension bytes", msg(18, b"\x00\x04\x00\x00" + b"more")))
    sent += [(label, data) for label, data, _ in malformed_cases(lnrr)]
    sent += [("unknown odd", msg(1001, b"\x01\x02")), ("unknown even", msg(1000, b"")), ("custom", msg(32769, b"\xc0\xff\xee"))]
    for _, data in sent:
        a.send_message(data)
    for _, data in sent:
        assert b.read_message() == data
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    return path, sent


def test_every_message_field_matches_lnrr_decode(lnrr, lua, session):
    path, sent = session
    packets = [(n, p) for n, p in pdml_packets(lua, path) if p is not None and p.get("name") == "lightning"]
    # Both inits, then what a sent, in order.
    assert len(packets) == 2 + len(sent)
    decoded = decode_all(lnrr, [INIT, INIT] + [d for _, d in sent])
    compared = 0
    for (number, proto), ours, label in zip(packets, decoded, ["init", "init"] + [l for l, _ in sent]):
        if "error" in ours:
            continue  # malformed: test_malformed_messages_are_expert_errors
        assert first(proto, "lightning.type").get("show") == str(ours["type"]), label
        assert first(proto, "lightning.name").get("show") == (ours["name"] or ours["kind"]), label
        assert first(proto, "lightning.kind").get("show") == ours["kind"], label
        compared += compare(ours["fields"], proto_without_meta(proto), label)
        # Undecoded bytes: a known message's trailing extension bytes, an unknown message's payload.
        extra = first(proto, "lightning.extra" if ours["kind"] == "known" else "lightning.body")
        assert (extra.get("value") if extra is not None else "") == ours.get("rest", ""), label
        assert [s for s, _ in experts(proto) if s == "Error"] == [], (label, experts(proto))
    # Every type of the catalogue was cross-checked, with its TLV records.
    names = {first(p, "lightning.name").get("show") for _, p in packets if first(p, "lightning.name") is not None}
    assert len(names & {n for n, _ in sent[:50]}) == 50
    # Field by field, not only per message: at least one comparison per value lnrr decoded.
    leaves = sum(json_leaves(d["fields"]) for d in decoded if "error" not in d)
    assert compared >= leaves > 300, (compared, leaves)
    print(f"cross-checked {compared} fields of {len(packets)} messages")


def proto_without_meta(proto):
    """A copy of the lightning element holding only the message's own fields."""
    el = ET.Element("field")
    name = first(proto, "lightning.name").get("show")
    el.extend(c for c in children(proto) if c.get("name") not in META and c.get("name") != f"lightning.{name}")
    return el


def test_every_tlv_record_is_shown(lnrr, lua, session):
    path, sent = session
    ns = namespace()
    out = dissect(lua, path, "-T", "pdml")
    for m in [ns.get_msgtype(name) for name, _ in sent[:50]]:
        for f in m.fields:
            if type(f.fieldtype).__name__ == "TlvStreamType":
                for record in f.fieldtype.fields:
                    assert f'name="lightning.{f.fieldtype.name}.{record.name}"' in out, (m.name, record.name)


def test_malformed_messages_are_expert_errors(lnrr, lua, session):
    path, sent = session
    packets = dict(pdml_packets(lua, path))
    cases = malformed_cases(lnrr)
    labels = [l for l, _ in sent]
    frame = {label: 3 + 2 + 1 + i for i, label in enumerate(labels)}  # 3 events, 2 inits, then a's messages
    decoded = decode_all(lnrr, [data for _, data, _ in cases])
    for (label, data, why), ours in zip(cases, decoded):
        assert "error" in ours, label  # lnrr agrees the message is malformed
        proto = packets[frame[label]]
        errors = [m for s, m in experts(proto) if s == "Error"]
        assert len(errors) == 1 and why in errors[0], (label, experts(proto))
        assert "internal error" not in errors[0]
        rest = first(proto, "lightning.rest")
        assert (rest.get("value") if rest is not None else "") == ours.get("rest", ""), label
    # Unknown types are shown as such, with the BOLT 1 consequence.
    odd = packets[frame["unknown odd"]]
    assert first(odd, "lightning.kind").get("show") == "unknown-odd"
    assert any(s == "Note" and "unknown odd type 1001" in m for s, m in experts(odd))
    even = packets[frame["unknown even"]]
    assert any(s == "Warning" and "unknown even type 1000" in m for s, m in experts(even))
    extension = packets[frame["extension bytes"]]
    assert first(extension, "lightning.extra").get("value") == b"more".hex()


def test_filters_select_the_right_packets(lnrr, lua, session):
    path, sent = session
    labels = ["init", "init"] + [l for l, _ in sent]
    frame = {label: 3 + 1 + i for i, label in enumerate(labels)}  # frame numbers: 3 events first

    def frames(display_filter):
        return [int(r[0]) for r in fields(lua, path, ["frame.number"], display_filter)]

    assert frames("lightning.type == 132") == [frame["commitment_signed"]]
    assert frames("lightning.name == \"open_channel\"") == [frame["open_channel"], frame["big open_channel"], frame["truncated"]]
    assert frames("lightning.open_channel.funding_satoshis == 100001") == [frame["big open_channel"]]
    big = [f for f in frames("lightning.open_channel.funding_satoshis > 100000")]
    assert frame["big open_channel"] in big
    # Feature filters select exactly the inits whose features lnrr names so.
    decoded = dict(zip(labels, decode_all(lnrr, [INIT, INIT] + [d for _, d in sent])))
    def init_names(label):
        d = decoded[label]
        return d["fields"]["features"]["names"] if d["name"] == "init" and "error" not in d else []
    remotekey = [frame[l] for l in frame if any(n.startswith("option_static_remotekey ") for n in init_names(l))]
    assert frame["init+features"] in remotekey
    assert frames("lightning.init.features.option_static_remotekey") == remotekey
    assert frames("lightning.init.features.bit == 101") == [frame[l] for l in frame if "bit 101" in init_names(l)]
    assert frames("lightning.kind == \"custom\"") == [frame["custom"]]
    assert frames("lightning.malformed") == sorted(frame[l] for l, _, _ in malformed_cases(lnrr))
    assert frames("lightning.direction == \"b->a\"") == [5]
    # Info column and direction/phase as fields.
    rows = fields(lua, path, ["frame.number", "_ws.col.Info", "lightning.direction", "lightning.phase"], "lightning")
    info = {int(r[0]): r[1] for r in rows}
    assert info[frame["commitment_signed"]].startswith("a->b commitment_signed (132)")
    assert info[5].startswith("b->a init (16) [phase connection: init -> opening]")
    assert {int(r[0]): r[3] for r in rows}[4] == "init"
    assert {int(r[0]): r[3] for r in rows}[5] == "opening"


def test_phases_match_lnrr_show(lnrr, lua, session):
    """lnrr's phase tracker (lnrr show) and the dissector's replay of the phase comments agree."""
    path, _ = session
    lines, _ = show_json(lnrr, path)
    rows = fields(lua, path, ["lightning.phase"], "lightning")
    assert [r[0] for r in rows] == [l["phase"] for l in lines if "hex" in l]


def test_session_events_are_fields(lnrr, lua, session):
    path, _ = session
    lines, _ = show_json(lnrr, path)
    events = [l for l in lines if "event" in l]
    rows = fields(lua, path, ["lnrr.event", "lnrr.event.side", "lnrr.event.node_id", "lnrr.event.reason", "lnrr.event.by"], "lnrr")
    assert [r[0] for r in rows] == [e["event"] for e in events]
    handshakes = [r for r in rows if r[0] == "handshake"]
    assert [(r[1], r[2]) for r in handshakes] == [(e["side"], e["node_id"]) for e in events if e["event"] == "handshake"]
    close = next(e for e in events if e["event"] == "close")
    assert (rows[-1][0], rows[-1][3], rows[-1][4]) == ("close", close["reason"], close.get("by", ""))
    assert len(fields(lua, path, ["frame.number"], 'lnrr.event == "handshake" && lnrr.event.side == "b"')) == 1
    assert len(fields(lua, path, ["frame.number"], "lnrr.event.transparent == 1")) == 1


def test_example_recording_rules_phases_and_delivery(lua):
    rows = fields(lua, EXAMPLE, ["frame.number", "_ws.col.Info", "lightning.phase", "lightning.phase.change",
                                 "lightning.rule.name", "lightning.delivery"], "lightning")
    by = {int(r[0]): r for r in rows}
    # The recording's own comments (docs/recording-format.md), parsed by this test from pcapng.
    assert by[23][1].startswith("b->a shutdown (38)")
    assert by[23][2] == "closing" and "e659..cc2d: channel -> closing" in by[23][3].split("|")
    assert by[23][4] == "custommsg-at-handover"
    assert by[24][1].startswith("a->b custom (32769)") and by[24][5] == "injected"
    assert by[13][2] == "channel" and by[6][2] == "opening" and by[25][2] == "closed"
    assert fields(lua, EXAMPLE, ["frame.number"], 'lightning.delivery == "injected"') == [["24"]]
    assert fields(lua, EXAMPLE, ["frame.number"], 'lightning.phase == "closing"') == [["23"], ["24"]]


def test_installed_plugin_works_without_options(lnrr, tmp_path):
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    installed = Path(run(lnrr, "wireshark", "--install", env=env).stdout.strip())
    folders = run(tshark(), "-G", "folders", env=env).stdout
    assert f"Personal Lua Plugins:\t{installed.parent}" in folders
    assert installed.read_text() == (REPO / "tools/wireshark/lightning.lua").read_text()
    r = run(tshark(), "-r", EXAMPLE, env=env)
    assert "a->b open_channel (32)" in r.stdout and "Lua: Error" not in r.stdout + r.stderr
    # Installed and given with -X as well: loaded once, no "already registered" error.
    script = run(lnrr, "wireshark", "--print-path", env=env).stdout.strip()
    r = run(tshark(), "-X", f"lua_script:{script}", "-r", EXAMPLE, env=env)
    assert "a->b open_channel (32)" in r.stdout and "Lua: Error" not in r.stdout + r.stderr
    assert "installed and current" in run(lnrr, "wireshark", env=env).stdout
    # Someone else's file of that name is not replaced.
    installed.write_text("-- not ours\n")
    r = run(lnrr, "wireshark", "--install", env=env, check=False)
    assert r.returncode == 1 and "not lnrr's dissector" in r.stderr
    assert installed.read_text() == "-- not ours\n"


def doc_commands(path, only_tshark=False):
    """The shell commands of a Markdown file's ```sh blocks, one per line."""
    out, inside = [], False
    for line in (REPO / path).read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh"
            continue
        if inside and line.strip() and not line.startswith("#") and (not only_tshark or line.startswith("tshark")):
            out.append(line)
    return out


def run_doc_command(lnrr, command, home):
    env = {"HOME": str(home), "PATH": f"{Path(lnrr).parent}:/usr/bin:/bin"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (command, r.stderr)
    assert "Lua: Error" not in r.stdout + r.stderr, (command, r.stderr)
    return r.stdout


def test_docs_commands_run_as_typed(lnrr, tmp_path):
    """Every command of docs/wireshark.md, in order (install first), against the example recording."""
    commands = doc_commands("docs/wireshark.md")
    assert commands[0] == "lnrr wireshark --install" and len(commands) > 20
    outputs = {c: run_doc_command(lnrr, c, tmp_path / "home") for c in commands}
    assert "a->b commitment_signed (132)" in outputs["tshark -r recordings/examples/custommsg-during-closing.pcapng -Y 'lightning.type == 132'"]
    table = next(o for c, o in outputs.items() if "-e frame.time_relative" in c)
    assert "b->a\tclosing\tshutdown" in table


def test_recordings_readme_one_liner_names_every_message(lnrr, tmp_path):
    [one_liner] = doc_commands("recordings/examples/README.md", only_tshark=True)
    rows = [line.split("\t") for line in run_doc_command(lnrr, one_liner, tmp_path / "home").splitlines()]
    lines, _ = show_json(lnrr, EXAMPLE)
    messages = [l for l in lines if "hex" in l]
    assert [r[2] for r in rows] == [l.get("name") or l.get("kind") for l in messages]
    assert [r[1] for r in rows] == [l["dir"] for l in messages]
    # The phase the dissector rebuilds from the recording's comments is the one lnrr's tracker gives.
    assert [r[3] for r in rows] == [l["phase"] for l in messages]
    assert rows[-2][1:] == ["a->b", "custom", "closing"]


def test_rule_actions_and_delivery_notes_are_fields(lnrr, lua, keys, procs, tmp_path):
    """A recording with dropped, duplicated and replaced messages: every `delivery:` and rule comment
    lnrr wrote (as `lnrr show --json` reads them) is a filterable field on the right packet."""
    keys("a"), keys("b")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n"
                     "  - {name: no-pings, match: {type: ping}, action: drop}\n"
                     "  - {name: twice, match: {type: pong}, action: duplicate}\n"
                     "  - {name: swap, match: {custom: true}, action: {replace: {hex: '8003aa'}}}\n")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--rules", rules)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    for m in [INIT, msg(18, b"\x00\x02\x00\x00"), msg(19, b"\x00\x00"), msg(32769, b"\x01")]:
        a.send_message(m)
    assert [b.read_message() for _ in range(4)] == [INIT, msg(19, b"\x00\x00"), msg(19, b"\x00\x00"), bytes.fromhex("8003aa")]
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")

    lines, _ = show_json(lnrr, path)
    messages = [l for l in lines if "hex" in l]
    rows = fields(lua, path, ["lightning.name", "lightning.delivery", "lightning.rule.name", "lightning.note"], "lightning")
    assert len(rows) == len(messages) == 5
    for row, m in zip(rows, messages):
        comments = m.get("comments", [])
        assert row[1] == next((c[len("delivery: "):] for c in comments if c.startswith("delivery: ")), ""), (row, comments)
        names = [c.split('"')[1] for c in comments if c.startswith('rule "')]
        assert row[2] == "|".join(names), (row, comments)
    by_name = {r[0]: r for r in rows}
    assert by_name["ping"][1:3] == ["none", "no-pings"]
    assert by_name["pong"][1:3] == ["twice", "twice"]
    assert rows[3][:2] == ["custom", "replaced"] and rows[4][:2] == ["custom", "replacement"]
    assert "replacement for #" in rows[-1][3]
    assert len(fields(lua, path, ["frame.number"], "lightning.not_delivered")) == 2  # none, replaced
    assert len(fields(lua, path, ["frame.number"], "lightning.made_by_lnrr")) == 1


def write_pcapng(path, packets):
    """A minimal pcapng (spec: section header, two interface descriptions like lnrr's, enhanced packets)
    written here, independently of lnrr's writer, for inputs lnrr's proxy would not produce."""
    import struct

    def block(btype, body):
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 147, 0, 0)) + block(1, struct.pack("<HHI", 148, 0, 0))
    for i, (interface, data) in enumerate(packets):
        out += block(6, struct.pack("<IIIII", interface, 0, i, len(data), len(data)) + data)
    Path(path).write_bytes(out)


def test_mutated_messages_agree_with_lnrr_decode(lnrr, lua, tmp_path):
    """Hundreds of truncated, bit-flipped and extended variants of every message type: tshark flags a
    message malformed exactly when lnrr's decoder does, shows the same undecoded rest, and otherwise
    the same fields; never a Lua error or an internal error."""
    import random
    rng = random.Random(99)
    _, valid = every_type(lnrr)
    variants = []
    for m in valid * 4:
        variants.append(m[: rng.randint(1, len(m) - 1)])                       # truncated
        flipped = bytearray(m)
        at = rng.randint(2, len(m) - 1)
        flipped[at] ^= 1 << rng.randint(0, 7)
        variants.append(bytes(flipped))                                        # one bit flipped
        variants.append(m + rng.choice([b"\x01\x00", b"\x02\x01\xff", b"\xfd\x00\x03\x00", b"\xff" * 3]))
    pcap = tmp_path / "mutated.pcapng"
    write_pcapng(pcap, [(0, v) for v in variants])
    decoded = decode_all(lnrr, variants)
    packets = pdml_packets(lua, pcap)
    assert len(packets) == len(variants)
    malformed = 0
    for (number, proto), ours, data in zip(packets, decoded, variants):
        errors = [m for s, m in experts(proto) if s == "Error"]
        assert not any("internal error" in e for e in errors), (data.hex(), errors)
        if "error" in ours:
            malformed += 1
            assert len(errors) == 1, (data.hex(), ours["error"], errors)
            assert f"at byte {ours['error']['offset']}:" in errors[0], (data.hex(), ours["error"], errors)
            rest = first(proto, "lightning.rest")
            assert (rest.get("value") if rest is not None else "") == ours.get("rest", ""), data.hex()
        else:
            assert errors == [], (data.hex(), errors)
            compare(ours["fields"], proto_without_meta(proto), data.hex())
    assert 50 < malformed < len(variants), malformed
    print(f"{len(variants)} mutated messages, {malformed} malformed, all classified alike")


def test_events_json_edge_cases(lua, tmp_path):
    events = [
        b'{"event":"handshake","node_id":"02aa","side":"a","transparent":true}',
        b'{"event":"hook","direction":"a->b","message":7,"result":"continue (hook ignored: \\"x\\" \\u00e9)"}',
        b'{"event":"backpressure","cause":"recording","on":false}',
        b'{"event":"future","nested":{"a":[1,2,{"b":null}]},"n":-1.5e3}',
        b'{"event":"close","reason":"eof"',   # cut short
        b'not json',
        b'',
    ]
    pcap = tmp_path / "events.pcapng"
    write_pcapng(pcap, [(1, e) for e in events])
    rows = fields(lua, pcap, ["lnrr.event", "lnrr.event.transparent", "lnrr.event.message", "lnrr.event.result",
                              "lnrr.event.on", "lnrr.event.other", "_ws.expert.message"])
    assert rows[0][:2] == ["handshake", "1"]
    assert rows[1][2:4] == ["7", 'continue (hook ignored: "x" é)']
    assert rows[2][4] == "0"
    assert rows[3][5] == 'nested={"a":[1,2,{"b":null}]}|n=-1.5e3'
    for row in rows[4:]:
        assert "event is not a JSON object" in row[6], row


def test_every_field_is_registered_with_its_type(lua):
    """`tshark -G fields` lists a typed field for every field of every message, subtype and TLV record
    in pyln-proto's reading of the CSVs, and one per BOLT 9 feature under every feature bitfield."""
    r = subprocess.run([tshark(), "-G", "fields", "-X", f"lua_script:{lua}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    registered = {row[2]: row[3] for row in (l.split("\t") for l in r.stdout.splitlines()) if row[0] == "F"}
    ns = namespace()
    expected = {}

    def want(abbrev, ftype):
        kind = type(ftype).__name__
        if kind == "LengthFieldType":
            ftype, kind = ftype.underlying_type, "IntegerType"
        if kind == "IntegerType":
            expected[abbrev] = f"FT_{'INT' if ftype.name.startswith('s') else 'UINT'}{ftype.bytelen * 8}"
        elif kind == "TruncatedIntType":
            expected[abbrev] = f"FT_UINT{ftype.maxbytes * 8}"
        elif kind == "BigSizeType":
            expected[abbrev] = "FT_UINT64"
        elif kind == "ShortChannelIDType":
            expected[abbrev] = "FT_STRING"
        elif kind in ("SizedArrayType", "EllipsisArrayType", "DynamicArrayType"):
            if ftype.elemtype.name == "byte":
                expected[abbrev] = "FT_BYTES"
            else:
                want(abbrev, ftype.elemtype)
        else:
            expected[abbrev] = "FT_BYTES"  # points, hashes, signatures, subtypes, TLV streams

    def walk(scope, fields_):
        for f in fields_:
            want(f"lightning.{scope}.{f.name}", f.fieldtype)

    for m in (ns.get_msgtype_by_number(n) for n in range(0, 1024)):
        if m:
            walk(m.name, m.fields)
            for f in m.fields:
                kind = type(f.fieldtype).__name__
                if kind == "TlvStreamType":
                    for record in f.fieldtype.fields:
                        expected[f"lightning.{f.fieldtype.name}.{record.name}"] = "FT_BYTES"
                        walk(f"{f.fieldtype.name}.{record.name}", record.fields)
                sub = getattr(f.fieldtype, "elemtype", f.fieldtype)
                if type(sub).__name__ == "SubtypeType":
                    walk(sub.name, sub.fields)
    assert len(expected) > 300
    wrong = {a: (t, registered.get(a)) for a, t in expected.items() if registered.get(a) != t}
    assert not wrong, wrong
    features = [l.split(",")[2] for l in (REPO / "tools/bolts/09-features.csv").read_text().splitlines()]
    for bitfield in ["lightning.init.features", "lightning.init.globalfeatures", "lightning.node_announcement.features",
                     "lightning.channel_announcement.features", "lightning.open_channel_tlvs.channel_type.type"]:
        assert registered[bitfield + ".bit"] == "FT_UINT16"
        assert all(registered.get(f"{bitfield}.{name}") == "FT_UINT16" for name in features), bitfield
    print(f"{len(expected)} catalogue fields registered with their types; {len(registered)} fields in all")

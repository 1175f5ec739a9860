"""`lnrr view` and `lnrr replay --report` in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by selenium opens the generated page and the tests assert its DOM against
what an independent pcapng reader (below, written from the format document) and tshark say the
recording holds. Missing Chromium fails the suite; it is never skipped.
"""
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import REPO, run

sys.path.insert(0, str(REPO / "tools"))
import handover_scenario as scenario  # noqa: E402

EXAMPLE = REPO / "recordings" / "examples" / "custommsg-during-closing.pcapng"
EXAMPLE_HTML = EXAMPLE.with_suffix(".html")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


# --- An independent pcapng reader and writer (docs/recording-format.md) ------------------------------

def read_pcapng(path):
    """Messages of an lnrr recording: dicts with i, dir, type, data, comments; and the metadata."""
    raw = Path(path).read_bytes()
    at, link_types, messages, meta = 0, [], [], None
    while at + 12 <= len(raw):
        btype, blen = struct.unpack_from("<II", raw, at)
        body = raw[at + 8:at + blen - 4]
        if btype == 0x0A0D0D0A:
            link_types = []
            for code, value in options(body, 16):
                if code == 1 and value.startswith(b"lnrr: "):
                    meta = json.loads(value[6:])
        elif btype == 1:
            link_types.append(struct.unpack_from("<H", body)[0])
        elif btype == 6:
            iface, _, _, caplen, _ = struct.unpack_from("<IIIII", body)
            if link_types[iface] == 147:
                data = body[20:20 + caplen]
                m = {"i": len(messages), "data": data, "type": struct.unpack(">H", data[:2])[0], "comments": [], "dir": None}
                for code, value in options(body, 20 + (caplen + 3) // 4 * 4):
                    if code == 1:
                        m["comments"].append(value.decode())
                    elif code == 2:
                        m["dir"] = {1: "a->b", 2: "b->a"}[struct.unpack("<I", value)[0] & 3]
                messages.append(m)
        at += blen
    return messages, meta


def options(body, start):
    at = start
    while at + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, at)
        if code == 0:
            return
        yield code, body[at + 4:at + 4 + length]
        at += 4 + (length + 3) // 4 * 4


def block(btype, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def option(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def write_pcapng(path, meta, records):
    """records: ("msg", ts_ns, dir, bytes, [comments]) or ("event", ts_ns, {json})."""
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                 + option(1, b"lnrr: " + json.dumps(meta).encode()) + option(0, b""))]
    for link, name in [(147, b"lightning"), (148, b"lnrr-events")]:
        out.append(block(1, struct.pack("<HHI", link, 0, 0) + option(2, name) + option(9, b"\x09") + option(0, b"")))
    for r in records:
        if r[0] == "msg":
            _, ts, direction, data, comments = r
            opts = b"".join(option(1, c.encode()) for c in comments)
            opts += option(2, struct.pack("<I", 1 if direction == "a->b" else 2))
            opts += option(3, b"\x02" + struct.pack(">I", zlib.crc32(data)))
            iface = 0
        else:
            _, ts, event = r
            data, opts, iface = json.dumps(event, separators=(",", ":")).encode(), b"", 1
        padded = data + b"\0" * (-len(data) % 4)
        out.append(block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + padded + opts + option(0, b"")))
    Path(path).write_bytes(b"".join(out))


NODE_A = "02" + "aa" * 32
NODE_B = "03" + "bb" * 32
CHANNEL = bytes(range(32))


def meta(session, started_ns, node_a=NODE_A, node_b=NODE_B):
    return {"format": "lnrr-pcapng/1", "lnrr_version": "0.1.0", "session_id": session, "started_ns": started_ns,
            "started": "2026-11-26T00:00:00.000000000Z", "node_a": node_a, "node_b": node_b, "listen": "127.0.0.1:1",
            "upstream": f"{node_b}@127.0.0.1:2", "transparent": True, "sync": "message"}


def channel_traffic(count, start_ns):
    """`count` messages of a channel at work: init, channel_reestablish, then HTLC rounds (add,
    commitment_signed, revoke_and_ack both ways, fulfill, ...) with a ping/pong every 100 messages."""
    cid = CHANNEL
    point = b"\x02" + b"\x11" * 32
    sig = b"\x22" * 64
    cycle = [
        ("a->b", struct.pack(">H", 128) + cid + struct.pack(">QQ", 1, 50_000_000) + b"\x33" * 32 + struct.pack(">I", 500) + b"\x00" * 1366),
        ("a->b", struct.pack(">H", 132) + cid + sig + struct.pack(">H", 1) + sig),
        ("b->a", struct.pack(">H", 133) + cid + b"\x44" * 32 + point),
        ("b->a", struct.pack(">H", 132) + cid + sig + struct.pack(">H", 1) + sig),
        ("a->b", struct.pack(">H", 133) + cid + b"\x44" * 32 + point),
        ("b->a", struct.pack(">H", 130) + cid + struct.pack(">Q", 1) + b"\x55" * 32),
        ("b->a", struct.pack(">H", 132) + cid + sig + struct.pack(">H", 0)),
        ("a->b", struct.pack(">H", 133) + cid + b"\x44" * 32 + point),
        ("a->b", struct.pack(">H", 132) + cid + sig + struct.pack(">H", 0)),
        ("b->a", struct.pack(">H", 133) + cid + b"\x44" * 32 + point),
    ]
    reestablish = struct.pack(">H", 136) + cid + struct.pack(">QQ", 1, 0) + b"\x00" * 32 + point
    records = [("event", start_ns, {"event": "session-start", "a_address": "127.0.0.1:3"}),
               ("msg", start_ns + 1000, "a->b", bytes.fromhex("001000000000"), []),
               ("msg", start_ns + 2000, "b->a", bytes.fromhex("001000000000"), []),
               ("msg", start_ns + 3000, "a->b", reestablish, []),
               ("msg", start_ns + 4000, "b->a", reestablish, [])]
    n = 4
    while n < count:
        ts = start_ns + 10_000 + n * 50_000
        if n % 100 == 0 and n + 1 < count:
            records.append(("msg", ts, "a->b", bytes.fromhex("0012000400020000"), []))
            records.append(("msg", ts + 100, "b->a", bytes.fromhex("0013000400000000"), []))
            n += 2
            continue
        direction, data = cycle[n % len(cycle)]
        records.append(("msg", ts, direction, data, []))
        n += 1
    records.append(("event", start_ns + 10_000 + n * 50_000, {"event": "close", "by": "a", "reason": "eof"}))
    return records


# --- The browser ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} is missing: apt-get install chromium chromium-driver (tools/test installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1400",
                "--enable-precise-memory-info"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(180)
    yield driver
    driver.quit()


def open_page(driver, path, timeout=120):
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.documentElement.dataset.ready === '1'"))


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def rows(driver, css=".row.msg"):
    return driver.find_elements(By.CSS_SELECTOR, css)


def tshark_message_count(path):
    out = run("tshark", "-r", path, "-Y", "frame.interface_id == 0", "-T", "fields", "-e", "frame.number").stdout
    return len(out.split())


def view(lnrr, *args, timeout=120):
    return run(lnrr, "view", *[str(a) for a in args], timeout=timeout)


# --- Tests ------------------------------------------------------------------------------------------

def test_example_page_is_fresh(lnrr, tmp_path):
    """The committed example page is what `lnrr view` makes of the committed recording, byte for byte."""
    out = tmp_path / "example.html"
    view(lnrr, EXAMPLE, "-o", out)
    assert EXAMPLE_HTML.is_file(), "recordings/examples/custommsg-during-closing.html is missing"
    assert out.read_bytes() == EXAMPLE_HTML.read_bytes(), (
        "recordings/examples/custommsg-during-closing.html is stale: run "
        "lnrr view recordings/examples/custommsg-during-closing.pcapng")
    # Deterministic: a second run gives the same bytes.
    again = tmp_path / "again.html"
    view(lnrr, EXAMPLE, "-o", again)
    assert again.read_bytes() == out.read_bytes()


def test_ladder_of_the_example(lnrr, browser, tmp_path):
    page = tmp_path / "example.html"
    view(lnrr, EXAMPLE, "-o", page)
    html = page.read_text()
    # Self-contained: nothing that could fetch.
    assert not re.search(r"<script[^>]+src|<link|<img|@import|url\(|https?://", html), "the page refers to something outside it"
    messages, metadata = read_pcapng(EXAMPLE)
    assert len(messages) == tshark_message_count(EXAMPLE) == 22

    open_page(browser, page)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    arrows = rows(browser)
    # One arrow per message, in order, with each message's direction and type.
    assert len(arrows) == len(messages)
    assert [(int(a.get_attribute("data-i")), a.get_attribute("data-dir"), int(a.get_attribute("data-type"))) for a in arrows] == \
        [(m["i"], m["dir"], m["type"]) for m in messages]
    assert browser.find_element(By.ID, "count").text == "22 messages"
    assert "a " + metadata["node_a"][:8] in browser.find_element(By.ID, "cols").text

    # Phase bands change exactly at the hand-overs the proxy recorded in its comments.
    recorded = set()
    for m in messages:
        for c in m["comments"]:
            hit = re.fullmatch(r"phase (\S+)(?: \(was \S+\))?: (\S+) -> (\S+)", c)
            if hit:
                # The example was recorded before the `idle` phase: its last connection change reads
                # `closing -> opening`, which today's tracker (and so the page) names `closing -> idle`.
                to = "idle" if (hit[1], hit[2], hit[3]) == ("connection", "closing", "opening") else hit[3]
                recorded.add((m["i"], hit[1], f"{hit[2]} -> {to}"))
    assert len(recorded) == 7   # init->opening, opening->channel x2, channel->closing x2, closing->...
    edges = browser.find_elements(By.CSS_SELECTOR, ".band.edge[data-change*='->']")
    assert {(int(e.get_attribute("data-i")), e.get_attribute("data-col"), e.get_attribute("data-change")) for e in edges} == recorded
    # and the band of the row after the closing hand-over is the closing colour.
    shutdown_b = next(m["i"] for m in messages if m["type"] == 38 and m["dir"] == "b->a")
    row = browser.find_element(By.CSS_SELECTOR, f".row.msg[data-i='{shutdown_b}']")
    assert "p-closing" in row.find_elements(By.CSS_SELECTOR, ".band")[1].get_attribute("class")

    # Marks: the injection starts at lnrr and is marked with its rule.
    injected = [m for m in messages if "delivery: injected" in m["comments"]]
    assert len(injected) == 1
    row = browser.find_element(By.CSS_SELECTOR, f".row.msg[data-i='{injected[0]['i']}']")
    assert row.find_elements(By.CSS_SELECTOR, ".arrow.from-lnrr")
    assert [e.text for e in row.find_elements(By.CSS_SELECTOR, ".mk-injected")] == ["injected"]
    assert "custommsg-at-handover" in row.find_element(By.CSS_SELECTOR, ".mk-rule").text
    close = browser.find_elements(By.CSS_SELECTOR, ".row.ev")[-1]
    assert "close" in close.text and "reason=eof" in close.text

    # A click shows the decoded fields (checked against the bytes) and the hex.
    open_channel = next(m for m in messages if m["type"] == 32)
    funding = struct.unpack_from(">Q", open_channel["data"], 2 + 32 + 32)[0]
    browser.find_element(By.CSS_SELECTOR, f".row.msg[data-i='{open_channel['i']}'] .arrow").click()
    detail = browser.find_element(By.ID, "detail")
    assert detail.is_displayed()
    fields = {f.get_attribute("data-path"): f.text for f in detail.find_elements(By.CSS_SELECTOR, ".decoded .f")}
    assert fields["funding_satoshis"] == f"funding_satoshis: {funding}"
    assert fields["temporary_channel_id"].endswith(open_channel["data"][34:66].hex())
    assert "0000  " + " ".join(f"{b:02x}" for b in open_channel["data"][:16]) in detail.find_element(By.CSS_SELECTOR, "pre.hex").text

    # Keyboard: j moves the selection to the next arrow, Enter closes and reopens the details.
    ladder = browser.find_element(By.ID, "ladder")
    ladder.send_keys("j")
    assert int(browser.find_element(By.CSS_SELECTOR, ".row.sel").get_attribute("data-i")) == open_channel["i"] + 1
    assert "accept_channel" in detail.find_element(By.TAG_NAME, "h2").text
    ladder.send_keys(Keys.ENTER)
    assert not detail.is_displayed()
    ladder.send_keys(Keys.ARROW_UP, Keys.ENTER)
    assert "open_channel" in detail.find_element(By.TAG_NAME, "h2").text
    ladder.send_keys("/")
    assert browser.switch_to.active_element == browser.find_element(By.ID, "filter")

    # Filters: by direction, then by type.
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    Select(browser.find_element(By.ID, "dir")).select_by_value("b->a")
    got = rows(browser)
    assert len(got) == sum(m["dir"] == "b->a" for m in messages) and all(r.get_attribute("data-dir") == "b->a" for r in got)
    assert browser.find_element(By.ID, "count").text == f"{len(got)} of 22 messages"
    Select(browser.find_element(By.ID, "dir")).select_by_value("")
    box = browser.find_element(By.ID, "filter")
    box.send_keys("commitment_signed, 32769")
    assert sorted(int(r.get_attribute("data-i")) for r in rows(browser)) == [m["i"] for m in messages if m["type"] in (132, 32769)]
    box.clear()
    box.send_keys("custom")
    assert [int(r.get_attribute("data-type")) for r in rows(browser)] == [32769]
    box.send_keys(Keys.BACKSPACE * 6)
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    assert len(rows(browser)) == 22

    shot = tmp_path / "example.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    assert console_errors(browser) == []


def test_reconnects_stack_in_recorded_order(lnrr, browser, tmp_path):
    t0 = 1_795_000_000_000_000_000
    first, second = tmp_path / "s1.pcapng", tmp_path / "s2.pcapng"
    write_pcapng(first, meta(1, t0), channel_traffic(30, t0))
    write_pcapng(second, meta(2, t0 + 5_000_000_000), channel_traffic(12, t0 + 5_000_000_000))
    page = tmp_path / "both.html"
    view(lnrr, second, first, "-o", page)   # given out of order
    open_page(browser, page)
    headers = browser.find_elements(By.CSS_SELECTOR, ".row.seg")
    assert [h.text.split(" \u00b7 ")[0] for h in headers] == ["session 1", "reconnect: session 2"]
    assert "s1.pcapng" in headers[0].text and "5.000 s after" in headers[1].text
    assert [int(r.get_attribute("data-seg")) for r in rows(browser)] == [0] * 30 + [1] * 12
    assert browser.find_element(By.ID, "count").text == "42 messages"
    assert console_errors(browser) == []

    # Another pair of nodes does not stack: a clear error, exit 2.
    other = tmp_path / "other.pcapng"
    write_pcapng(other, meta(3, t0, node_b="03" + "cc" * 32), channel_traffic(5, t0))
    r = run(lnrr, "view", first, other, "-o", tmp_path / "x.html", check=False)
    assert r.returncode == 2 and "records other nodes" in r.stderr, r
    r = run(lnrr, "view", tmp_path / "missing.pcapng", check=False)
    assert r.returncode == 2 and "missing.pcapng" in r.stderr, r


def test_replay_report_marks_the_first_divergence(lnrr, browser, tmp_path, monkeypatch):
    monkeypatch.setenv("LNRR_BIN", lnrr)
    page = tmp_path / "report.html"
    # A fresh fundee has other keys than the recorded one: --match fields sees its points differ.
    code, report, _ = scenario.replay(str(EXAMPLE), tmp_path / "keys", ["--match", "fields", "--timing", "fast", "--report", str(page)])
    assert code == 1 and report[-1]["verdict"] == "diverged", report[-3:]
    first = next(l for l in report if l.get("result") in ("diverged", "missing", "unexpected", "not-run"))
    assert first["step"] == report[-1]["first_divergence_step"]

    open_page(browser, page)
    assert browser.find_element(By.ID, "verdict").text == "verdict: diverged"
    marked = browser.find_elements(By.CSS_SELECTOR, ".row.first-div")
    assert len(marked) == 1
    assert int(marked[0].get_attribute("data-i")) == first["record"] and marked[0].get_attribute("data-name") == first["name"]
    # Every diverging step is marked, and each replayed step has its arrow on the live side.
    steps = [l for l in report if "result" in l]
    diverging = [l for l in steps if l["result"] in ("diverged", "missing", "unexpected", "not-run")]
    assert len(rows(browser, ".row.divergent")) == len({(l["segment"], l["record"]) for l in diverging if l.get("record") is not None}) \
        + sum(1 for l in diverging if l.get("record") is None)
    assert len(rows(browser, ".live .arrow")) == len({(l["segment"], l.get("record")) for l in steps if l.get("record") is not None}) \
        + sum(1 for l in steps if l.get("record") is None)
    # The page opens on the divergence with its decoded difference: the differing fields highlighted.
    detail = browser.find_element(By.ID, "detail")
    assert detail.is_displayed()
    assert first["detail"] in detail.text
    differing = {p.split(": recorded")[0] for p in first["detail"].split("; ")}
    highlighted = {f.get_attribute("data-path") for f in detail.find_elements(By.CSS_SELECTOR, ".decoded.recorded .f.diff")}
    assert differing and differing <= highlighted
    # The live message is decoded beside the recorded one, with the live values.
    def values(css):
        return {f.get_attribute("data-path"): f.text for f in detail.find_elements(By.CSS_SELECTOR, css + " > .f")}
    recorded, live = values(".decoded.recorded"), values(".decoded.live")
    assert all(recorded[p] != live[p] for p in differing), (recorded, live)
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert console_errors(browser) == []


def renderer_rss_kb(driver):
    """Resident memory of the browser's renderer processes (the page's own work), from /proc."""
    root = driver.service.process.pid
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(pid))
        except OSError:
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1])
        except (OSError, TypeError):
            continue
    return total


def test_hundred_thousand_messages_stay_usable(lnrr, browser, tmp_path):
    t0 = 1_795_000_000_000_000_000
    rec = tmp_path / "big.pcapng"
    write_pcapng(rec, meta(1, t0), channel_traffic(100_000, t0))
    assert tshark_message_count(rec) == 100_000
    page = tmp_path / "big.html"
    started = time.monotonic()
    view(lnrr, rec, "-o", page, timeout=600)
    generate_s = time.monotonic() - started

    started = time.monotonic()
    open_page(browser, page, timeout=300)
    wall_s = time.monotonic() - started
    load_ms = browser.execute_script("return window.lnrrLoadMs")
    heap = browser.execute_script("return performance.memory.usedJSHeapSize")
    rss = renderer_rss_kb(browser)
    dom_rows = len(browser.find_elements(By.CSS_SELECTOR, ".row"))
    figures = {"messages": 100_000, "recording_mb": round(rec.stat().st_size / 1e6, 1), "html_mb": round(page.stat().st_size / 1e6, 1),
               "generate_s": round(generate_s, 2), "load_ms": round(load_ms), "open_wall_s": round(wall_s, 2),
               "js_heap_mb": round(heap / 1e6, 1), "renderer_rss_mb": round(rss / 1e3, 1), "dom_rows": dom_rows}
    assert browser.find_element(By.ID, "count").text == "100000 messages"
    # Virtualised: a screenful of rows in the DOM, not 100,000.
    assert 20 <= dom_rows <= 200, figures

    # Scrolling to the end draws the last messages; scrolling costs a frame, not a re-render of all.
    started = time.monotonic()
    browser.execute_script("const l = document.getElementById('ladder'); l.scrollTop = l.scrollHeight;")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".row.msg[data-i='99999']"))
    figures["scroll_to_end_ms"] = round((time.monotonic() - started) * 1000)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".row")) <= 200
    browser.find_element(By.CSS_SELECTOR, ".row.msg[data-i='99990'] .arrow").click()
    assert "#99990" in browser.find_element(By.CSS_SELECTOR, "#detail h2").text
    # Filtering 100,000 rows.
    started = time.monotonic()
    Select(browser.find_element(By.ID, "dir")).select_by_value("a->b")
    figures["filter_ms"] = round((time.monotonic() - started) * 1000)
    messages, _ = read_pcapng(rec)
    assert browser.find_element(By.ID, "count").text == f"{sum(m['dir'] == 'a->b' for m in messages)} of 100000 messages"
    print("view figures:", json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    # Generous bounds: the machine is shared; docs/performance.md has the measured figures.
    assert load_ms < 60_000 and rss < 4_000_000, figures
    assert console_errors(browser) == []


def test_rule_actions_hook_verdicts_and_disconnects_are_marked(lnrr, browser, tmp_path):
    """Every `delivery:` note, a hook verdict, a rule halt and a disconnect, as the format document
    defines them, show on their arrows and rows."""
    t0 = 1_795_000_000_000_000_000
    custom = bytes.fromhex("8001c0ffee")
    ping = bytes.fromhex("0012000400020000")
    records = [
        ("event", t0, {"event": "session-start", "a_address": "127.0.0.1:3"}),
        ("msg", t0 + 1, "a->b", bytes.fromhex("001000000000"), []),
        ("msg", t0 + 2, "b->a", bytes.fromhex("001000000000"), []),
        ("msg", t0 + 3, "a->b", ping, ['rule "no-pings": dropped', "delivery: none"]),              # 2
        ("msg", t0 + 4, "a->b", ping, ['rule "twice": duplicated', "delivery: twice"]),             # 3
        ("msg", t0 + 5, "b->a", custom, ['rule "swap": replaced', "delivery: replaced"]),           # 4
        ("msg", t0 + 6, "b->a", bytes.fromhex("8001beef"), ["replacement for #4", "delivery: replacement"]),  # 5
        ("msg", t0 + 7, "a->b", custom, []),                                                        # 6: the hook drops it
        ("event", t0 + 8, {"event": "hook", "direction": "a->b", "message": 6, "result": "drop"}),
        ("event", t0 + 9, {"event": "rule-halt", "kind": "blackhole"}),
        ("event", t0 + 10, {"event": "close", "reason": "disconnected", "detail": "a rule cut it </script><!-- <b>"}),
    ]
    rec = tmp_path / "actions.pcapng"
    write_pcapng(rec, meta(1, t0), records)
    page = tmp_path / "actions.html"
    view(lnrr, rec, "-o", page)
    open_page(browser, page)

    def row(i):
        return browser.find_element(By.CSS_SELECTOR, f".row.msg[data-i='{i}']")

    def marks(i):
        return {m.get_attribute("class").split()[1]: m.text for m in row(i).find_elements(By.CSS_SELECTOR, ".mk")}

    assert marks(2) == {"mk-drop": "not delivered", "mk-rule": "rule no-pings"}
    assert row(2).find_elements(By.CSS_SELECTOR, ".arrow.cut")          # stops at lnrr
    assert marks(3) == {"mk-twice": "twice", "mk-rule": "rule twice"} and "\u00d72" in row(3).text
    assert "mk-replaced" in marks(4) and row(4).find_elements(By.CSS_SELECTOR, ".arrow.cut")
    assert "mk-replacement" in marks(5) and row(5).find_elements(By.CSS_SELECTOR, ".arrow.from-lnrr")
    assert marks(6) == {"mk-hook": "hook: drop"} and row(6).find_elements(By.CSS_SELECTOR, ".arrow.cut")
    assert not row(0).find_elements(By.CSS_SELECTOR, ".mk") and not row(0).find_elements(By.CSS_SELECTOR, ".arrow.cut")
    cuts = [r.text for r in browser.find_elements(By.CSS_SELECTOR, ".row.ev.cut")]
    assert len(cuts) == 2 and "rule-halt kind=blackhole" in cuts[0] and "reason=disconnected" in cuts[1]
    # Text from the recording is data, never markup: it cannot end the embedded JSON or add elements.
    assert "a rule cut it </script><!-- <b>" in cuts[1]
    embedded = json.loads(page.read_text().split('id="lnrr-data">')[1].split("</script>")[0])
    assert embedded["segments"][0]["records"][-1]["detail"] == "a rule cut it </script><!-- <b>"
    # n jumps from mark to mark, and opens the details.
    browser.find_element(By.ID, "ladder").send_keys("n")
    assert browser.find_element(By.CSS_SELECTOR, ".row.sel").get_attribute("data-i") == "2"
    assert "rule \"no-pings\": dropped" in browser.find_element(By.ID, "detail").text
    assert console_errors(browser) == []


def test_a_truncated_recording_is_viewed_with_its_problem(lnrr, browser, tmp_path):
    raw = EXAMPLE.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    kept, _ = read_pcapng(cut)
    r = run(lnrr, "view", cut, check=False)
    assert r.returncode == 0 and "truncated tail" in r.stderr, r
    page = tmp_path / "cut.html"   # beside the recording, by default
    open_page(browser, page)
    assert len(rows(browser)) == len(kept) < 22
    assert "problems: truncated tail" in browser.find_element(By.CSS_SELECTOR, ".row.seg").text
    assert console_errors(browser) == []
    # To standard output with -o -.
    assert run(lnrr, "view", EXAMPLE, "-o", "-").stdout == EXAMPLE_HTML.read_text()

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LNFileIO

/// The self-contained HTML page of `lnrr view` and `lnrr replay --report`: the template lives in the
/// binary (an installed lnrr needs no repository), the data is embedded as JSON, and nothing is
/// fetched, so the file works from `file://` and offline.
enum ViewPage {
    /// The template around the place where the data goes.
    static let parts: (head: String, tail: String) = {
        let marker = "/*LNRR_DATA*/"
        let range = template.range(of: marker)!
        return (String(template[..<range.lowerBound]), String(template[range.upperBound...]))
    }()
}

/// Writes a page: the template's head, the JSON document as it is made, the template's tail.
struct PageWriter {
    private let fd: Int32
    private var buffer: [UInt8] = []

    private init(fd: Int32) { self.fd = fd }

    /// Writes a page to `path` (`-` for standard output): into a temporary file renamed over
    /// `path` at the end, so a failed run never leaves half a page behind.
    static func write(to path: String, _ body: (inout PageWriter) throws -> Void) throws {
        let temporary = path == "-" ? nil : path + ".tmp-\(getpid())"
        let fd = temporary.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? STDOUT_FILENO
        guard fd >= 0 else { throw CLIError("cannot write \(path): \(String(cString: strerror(errno)))") }
        var page = PageWriter(fd: fd)
        do {
            try page.raw(ViewPage.parts.head)
            try body(&page)
            try page.raw(ViewPage.parts.tail)
            try page.flush()
            if let temporary {
                guard close(fd) == 0, rename(temporary, path) == 0 else {
                    throw CLIError("cannot write \(path): \(String(cString: strerror(errno)))")
                }
            }
        } catch {
            if let temporary {
                close(fd)
                unlink(temporary)
            }
            throw error
        }
    }

    /// Template text, as is.
    mutating func raw(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 20 { try flush() }
    }

    /// JSON text for the data <script> element. A `<` inside a string could close the element
    /// (`</script>`) or open a comment (`<!--`); outside strings JSON has no `<`, so escaping every
    /// one is exact.
    mutating func data(_ json: String) throws {
        buffer.reserveCapacity(buffer.count + json.utf8.count)
        for byte in json.utf8 {
            if byte == UInt8(ascii: "<") {
                buffer.append(contentsOf: #"\u003c"#.utf8)
            } else {
                buffer.append(byte)
            }
        }
        if buffer.count >= 1 << 20 { try flush() }
    }

    mutating func flush() throws {
        if let failed = buffer.withUnsafeBytes({ FileIO.writeAll(fd, $0) }).errno {
            throw CLIError("cannot write the page: \(String(cString: strerror(failed)))")
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

extension ViewPage {
    /// Rows are absolutely positioned at multiples of the row height and only those in view (plus
    /// a margin) are in the DOM, so 100,000 messages cost as much to draw as 50.
    static let template = #"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lnrr view</title>
<style>
:root { --h: 24px; --lane: 340px; --ab: #1565c0; --ba: #8e24aa; --bad: #c62828; --warn: #ef6c00; --ok: #2e7d32;
  --p-init: #cfd8dc; --p-idle: #eceff1; --p-opening: #90caf9; --p-channel: #a5d6a7; --p-closing: #ffcc80; --p-closed: #bdbdbd; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.3 system-ui, sans-serif; color: #222; display: flex; flex-direction: column; height: 100vh; }
header { padding: 6px 10px; border-bottom: 1px solid #ccc; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 14px; margin: 0; }
header input { width: 220px; }
.legend i { display: inline-block; width: 11px; height: 11px; margin: 0 3px 0 8px; vertical-align: -1px; }
#verdict { font-weight: bold; }
#verdict.diverged, #verdict.error { color: var(--bad); } #verdict.matched { color: var(--ok); }
main { flex: 1; display: flex; min-height: 0; }
#ladder { flex: 1; overflow: auto; position: relative; outline: none; }
#cols { position: sticky; top: 0; z-index: 2; background: #fafafa; border-bottom: 1px solid #ccc; display: flex; height: 22px; align-items: center; white-space: nowrap; }
#spacer { position: relative; }
.row { position: absolute; left: 0; right: 0; height: var(--h); display: flex; align-items: stretch; white-space: nowrap; cursor: pointer; }
.row:hover { background: #f3f6fa; }
.row.sel { background: #e3ecf9; }
.t { width: 84px; flex: none; text-align: right; padding: 4px 8px 0 0; color: #666; font-variant-numeric: tabular-nums; }
.bands { flex: none; display: flex; min-width: 48px; overflow: hidden; }
.band { width: 14px; flex: none; border-right: 1px solid #fff; position: relative; }
.band.edge::before { content: ""; position: absolute; left: -1px; right: -1px; top: 0; border-top: 3px solid #000; }
.p-init { background: var(--p-init); } .p-idle { background: var(--p-idle); } .p-opening { background: var(--p-opening); } .p-channel { background: var(--p-channel); }
.p-closing { background: var(--p-closing); } .p-closed { background: var(--p-closed); }
.lane { width: var(--lane); flex: none; position: relative; margin: 0 6px;
  background: linear-gradient(#555, #555) 8px 0 / 2px 100% no-repeat, linear-gradient(#555, #555) calc(100% - 8px) 0 / 2px 100% no-repeat,
    repeating-linear-gradient(#bbb 0 3px, transparent 3px 6px) 50% 0 / 1px 100% no-repeat; }
.arrow { position: absolute; top: 16px; left: 9px; right: 9px; border-top: 2px solid var(--ab); }
.arrow::after { content: ""; position: absolute; top: -6px; border: 5px solid transparent; }
.arrow.ab::after { right: -2px; border-left: 8px solid var(--ab); border-right: 0; }
.arrow.ba { border-color: var(--ba); } .arrow.ba::after { left: -2px; border-right: 8px solid var(--ba); border-left: 0; }
.arrow.from-lnrr.ab { left: 50%; } .arrow.from-lnrr.ba { right: 50%; }
.arrow.cut { border-top-style: dashed; } .arrow.cut::after { border: 0; content: "\2715"; color: var(--bad); top: -10px; font-size: 12px; }
.arrow.cut.ab { right: 50%; } .arrow.cut.ab::after { right: -6px; } .arrow.cut.ba { left: 50%; } .arrow.cut.ba::after { left: -6px; }
.lbl { position: absolute; bottom: 3px; left: 0; right: 0; text-align: center; font-size: 12px; overflow: hidden; text-overflow: ellipsis; }
.lbl b { font-weight: 600; } .lbl small { color: #777; }
.live .arrow.r-matched, .live .arrow.r-sent { opacity: .75; }
.arrow.r-diverged, .arrow.r-unexpected, .arrow.r-missing { border-color: var(--bad); }
.arrow.r-diverged::after, .arrow.r-unexpected::after { border-left-color: var(--bad); border-right-color: var(--bad); }
.arrow.r-missing { border-top-style: dotted; }
.row.divergent { background: #fdecea; } .row.first-div { box-shadow: inset 4px 0 0 var(--bad); background: #f9d0cc; }
.notes { flex: 1; padding-top: 3px; overflow: hidden; text-overflow: ellipsis; }
.mk { display: inline-block; padding: 0 5px; margin-right: 4px; border-radius: 3px; font-size: 11px; background: #eee; }
.mk-rule { background: #fff3cd; } .mk-injected, .mk-replacement { background: #d1ecf1; } .mk-drop, .mk-cut, .mk-checksum { background: #f8d7da; }
.mk-twice, .mk-replaced { background: #ffe0b2; } .mk-hook { background: #e1bee7; } .mk-phase { background: #e8f5e9; font-weight: 600; }
.mk-r-diverged, .mk-r-missing, .mk-r-unexpected, .mk-r-not-run { background: #f8d7da; color: var(--bad); font-weight: 600; }
.mk-r-matched { background: #e8f5e9; } .mk-r-sent { background: #eceff1; }
.ev { color: #666; font-style: italic; } .ev .lane { background: none; text-align: center; padding-top: 4px; }
.ev.cut { color: var(--bad); font-style: normal; font-weight: 600; }
.seg { background: #263238; color: #fff; cursor: default; padding: 4px 10px; font-weight: 600; } .seg:hover { background: #263238; }
#detail { width: 44%; min-width: 360px; border-left: 1px solid #ccc; overflow: auto; padding: 8px 12px; display: none; }
#detail.open { display: block; }
#detail h2 { font-size: 14px; margin: 4px 0 8px; } #detail h3 { font-size: 13px; margin: 12px 0 4px; }
.f { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
.f .k { color: #1565c0; } .nest { margin-left: 16px; } .f.diff { background: #fdecea; }
pre.hex { font-size: 12px; margin: 0; } .difftext { color: var(--bad); font-weight: 600; }
.problems { color: var(--bad); }
kbd { border: 1px solid #bbb; border-radius: 3px; padding: 0 3px; font-size: 11px; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <span id="count"></span>
  <span id="verdict"></span>
  <label>type <input id="filter" placeholder="names, numbers, custom (/)" autocomplete="off"></label>
  <label>direction <select id="dir"><option value="">both</option><option value="a-&gt;b">a-&gt;b</option><option value="b-&gt;a">b-&gt;a</option></select></label>
  <span class="legend">phases<i class="p-init"></i>init<i class="p-idle"></i>idle<i class="p-opening"></i>opening<i class="p-channel"></i>channel<i class="p-closing"></i>closing<i class="p-closed"></i>closed</span>
  <span><kbd>j</kbd>/<kbd>k</kbd> move <kbd>Enter</kbd> details <kbd>/</kbd> filter <kbd>n</kbd> next mark</span>
</header>
<main>
  <div id="ladder" tabindex="0"><div id="cols"></div><div id="spacer"></div></div>
  <div id="detail"></div>
</main>
<script type="application/json" id="lnrr-data">/*LNRR_DATA*/</script>
<script>
"use strict";
const H = 24, OVERSCAN = 20;
const data = JSON.parse(document.getElementById("lnrr-data").textContent);
document.getElementById("lnrr-data").remove();  // the parsed copy is all the page needs: free the text
const replay = data.replay || null;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const secs = (ns) => (ns / 1e9).toFixed(6);
const short = (id) => (id ? id.slice(0, 8) + "\u2026" : "?");

// Rows: a header per recording, then its messages and events in file order; in a replay report,
// steps without a recorded message (unexpected, injected, closes) follow the step before them.
const rows = [];
let messageCount = 0, bandSlots = 1;
const stepsOf = replay ? replay.steps.map((s, n) => Object.assign(s, { n })) : [];
data.segments.forEach((seg, si) => {
  bandSlots = Math.max(bandSlots, seg.channels.length);
  seg.hooks = {};
  for (const r of seg.records) if (r.event === "hook") seg.hooks[r.message] = r;
  const byRecord = {}, after = {};
  let anchor = -1;
  for (const s of stepsOf.filter((s) => s.segment === si)) {
    if (s.record != null) { (byRecord[s.record] = byRecord[s.record] || []).push(s); anchor = s.record; }
    else (after[anchor] = after[anchor] || []).push(s);
  }
  const orphans = (k) => (after[k] || []).forEach((s) => rows.push({ kind: "step", seg: si, steps: [s], last: k }));
  rows.push({ kind: "seg", seg: si });
  orphans(-1);
  let last = -1;
  for (const r of seg.records) {
    if (r.event !== undefined) {
      if (r.event !== "hook") rows.push({ kind: "ev", seg: si, r, last });
      continue;
    }
    messageCount++;
    last = r.i;
    rows.push({ kind: "msg", seg: si, r, steps: byRecord[r.i] || null, last });
    orphans(r.i);
  }
});
rows.forEach((row, k) => {
  row.k = k;
  const steps = row.steps || [];
  row.divergent = steps.some((s) => ["diverged", "missing", "unexpected", "not-run"].includes(s.result));
  row.first = replay && replay.first_divergence != null && steps.some((s) => s.n === replay.first_divergence);
  row.marked = row.divergent || (row.kind === "msg" && marks(row).length > 0) || (row.kind === "ev" && isCut(row.r));
});

// What rules, the hook and lnrr did to a message: [class, short text, full text].
function marks(row) {
  const r = row.r, out = [];
  for (const c of r.comments || []) {
    if (c.startsWith("phase ")) continue;
    if (c.startsWith("delivery: ")) {
      const d = c.slice(10);
      const cls = { none: "drop", twice: "twice", replaced: "replaced", replacement: "replacement", "replacement, twice": "replacement", injected: "injected" }[d] || "rule";
      out.push([cls, d === "none" ? "not delivered" : d, c]);
    } else if (c.startsWith("rule ")) out.push(["rule", "rule " + (c.match(/^rule "([^"]*)"/) || [, ""])[1], c]);
    else if (c !== "injected by lnrr") out.push(["rule", c.length > 40 ? c.slice(0, 40) + "\u2026" : c, c]);
  }
  const hook = data.segments[row.seg].hooks[r.i];
  if (hook) out.push(["hook", "hook: " + hook.result, "custom-message hook answered " + hook.result]);
  if (r.checksum_ok === false) out.push(["checksum", "checksum mismatch", "the data does not match its CRC-32"]);
  return out;
}
function isCut(e) { return e.event === "rule-halt" || (e.event === "close" && e.reason !== "eof"); }
function delivery(r) {
  const c = (r.comments || []).find((c) => c.startsWith("delivery: "));
  return c ? c.slice(10) : null;
}
function hookDropped(row) {
  const h = data.segments[row.seg].hooks[row.r.i];
  return h && (h.result === "drop" || h.result === "replace");
}

// The phase of band column c of a segment at message index i: the last span starting at or before i.
function spanAt(col, i) {
  let lo = 0, hi = col.spans.length - 1, found = -1;
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (col.spans[mid][0] <= i) { found = mid; lo = mid + 1; } else hi = mid - 1; }
  return found < 0 ? null : col.spans[found];
}
function bandsHTML(row, i, exact) {
  const cols = data.segments[row.seg].channels;
  let h = '<span class="bands">';
  for (let c = 0; c < bandSlots; c++) {
    const col = cols[c], span = col && i >= 0 ? spanAt(col, i) : null;
    if (!span) { h += '<i class="band"></i>'; continue; }
    const edge = exact && span[0] === i && span[2] !== "";
    h += '<i class="band p-' + span[1] + (edge ? " edge" : "") + '" title="' + esc(col.label + ": " + span[1]) + '"'
      + (edge ? ' data-i="' + i + '" data-col="' + esc(col.label) + '" data-change="' + esc(span[2]) + '"' : "") + "></i>";
  }
  return h + "</span>";
}
function arrowHTML(dir, cls, label) {
  return '<span class="arrow ' + (dir === "a->b" ? "ab" : "ba") + " " + cls + '"><span class="lbl">' + label + "</span></span>";
}
function recordedLane(row) {
  if (row.kind !== "msg") return '<span class="lane"></span>';
  const r = row.r, d = delivery(r);
  let cls = "msg-arrow";
  if (d === "injected" || (d && d.startsWith("replacement"))) cls += " from-lnrr";
  if (d === "none" || d === "replaced" || hookDropped(row)) cls += " cut";
  const times = d === "twice" || d === "replacement, twice" ? " \u00d72" : "";
  return '<span class="lane">' + arrowHTML(r.dir, cls, "<b>" + esc(r.name) + "</b> <small>" + (r.type ?? "") + " \u00b7 " + r.len + " B" + times + "</small>") + "</span>";
}
function liveLane(row) {
  if (!replay) return "";
  const steps = row.steps || [];
  if (!steps.length) return '<span class="lane live"></span>';
  const s = steps[0];
  const what = s.name ? "<b>" + esc(s.name) + "</b> " : s.type == null && s.result !== "not-run" ? "<b>(close)</b> " : "";
  const label = what + "<small>" + esc(s.result) + (steps.length > 1 ? " \u00d7" + steps.length : "") + "</small>";
  return '<span class="lane live">' + arrowHTML(s.dir, "r-" + s.result, label) + "</span>";
}
function notesHTML(row) {
  let h = '<span class="notes">';
  if (row.kind === "msg") {
    for (const c of data.segments[row.seg].channels) {
      const span = spanAt(c, row.r.i);
      if (span && span[0] === row.r.i && span[2] !== "") h += '<span class="mk mk-phase">' + esc(c.label + ": " + span[2].replace("->", "\u2192")) + "</span>";
    }
    for (const [cls, text, full] of marks(row)) h += '<span class="mk mk-' + cls + '" title="' + esc(full) + '">' + esc(text) + "</span>";
  }
  for (const s of row.steps || []) {
    if (s.result === "sent" || s.result === "matched") { if (!s.detail) continue; }
    h += '<span class="mk mk-r-' + s.result + '" title="' + esc(s.detail || "") + '">' + esc(s.result + (s.detail ? ": " + s.detail : "")) + "</span>";
  }
  return h + "</span>";
}
function eventText(e) {
  const skip = new Set(["event", "t_ns", "ts_ns"]);
  return e.event + " " + Object.keys(e).filter((k) => !skip.has(k)).map((k) => k + "=" + e[k]).join(" ");
}
function rowHTML(row, top) {
  const cls = ["row", row.kind];
  if (row.k === selected) cls.push("sel");
  if (row.divergent) cls.push("divergent");
  if (row.first) cls.push("first-div");
  const attrs = ' style="top:' + top + 'px" data-k="' + row.k + '" data-seg="' + row.seg + '"';
  if (row.kind === "seg") return '<div class="' + cls.join(" ") + '"' + attrs + ">" + esc(segmentTitle(row.seg)) + "</div>";
  if (row.kind === "ev") {
    if (isCut(row.r)) cls.push("cut");
    return '<div class="' + cls.join(" ") + '"' + attrs + '><span class="t">' + secs(row.r.t_ns) + "</span>" + bandsHTML(row, row.last, false)
      + '<span class="lane">' + esc(eventText(row.r)) + "</span>" + (replay ? '<span class="lane live"></span>' : "") + "</div>";
  }
  if (row.kind === "step") {
    // Replay times count from the live connection, not the recording: they are in the details.
    return '<div class="' + cls.join(" ") + '"' + attrs + '><span class="t"></span>' + bandsHTML(row, row.last, false)
      + '<span class="lane"></span>' + liveLane(row) + notesHTML(row) + "</div>";
  }
  const r = row.r;
  return '<div class="' + cls.join(" ") + '"' + attrs + ' data-i="' + r.i + '" data-dir="' + r.dir + '" data-type="' + (r.type ?? "") + '" data-name="' + esc(r.name) + '">'
    + '<span class="t">' + secs(r.t_ns) + "</span>" + bandsHTML(row, r.i, true) + recordedLane(row) + liveLane(row) + notesHTML(row) + "</div>";
}
function segmentTitle(si) {
  const seg = data.segments[si], m = seg.meta || {};
  let t = (si === 0 ? "session " : "reconnect: session ") + (m.session_id ?? "?") + " \u00b7 " + (m.started || "") + " \u00b7 " + seg.file;
  if (si > 0) {
    const prev = data.segments[si - 1].meta, gap = prev && m.started_ns ? (m.started_ns - prev.started_ns) / 1e9 : null;
    if (gap != null) t += " \u00b7 " + gap.toFixed(3) + " s after the previous session started";
  }
  t += " \u00b7 bands: " + seg.channels.map((c) => c.label).join(", ");
  if (seg.channels_not_shown) t += " (and " + seg.channels_not_shown + " more channels without a band)";
  if (seg.problems.length) t += " \u00b7 problems: " + seg.problems.join("; ");
  return t;
}

// Filtering keeps a list of the rows shown; rendering draws only those in view.
let shown = rows.map((_, k) => k), selected = -1;
const ladder = $("ladder"), spacer = $("spacer");
function applyFilter() {
  const dir = $("dir").value;
  const tokens = $("filter").value.toLowerCase().split(/[\s,]+/).filter(Boolean);
  const typeOk = (type, name) => !tokens.length || tokens.some((t) =>
    /^\d+$/.test(t) ? type === +t : t === "custom" ? type >= 32768 : (name || "").toLowerCase().includes(t));
  shown = [];
  let count = 0;
  for (const row of rows) {
    let keep;
    if (row.kind === "seg") keep = true;
    else if (row.kind === "msg") keep = (!dir || row.r.dir === dir) && typeOk(row.r.type, row.r.name);
    else if (row.kind === "step") keep = (!dir || row.steps[0].dir === dir) && typeOk(row.steps[0].type, row.steps[0].name);
    else keep = !tokens.length && !dir;
    if (keep) { shown.push(row.k); if (row.kind === "msg") count++; }
  }
  $("count").textContent = (count === messageCount ? "" : count + " of ") + messageCount + " messages";
  spacer.style.height = shown.length * H + "px";
  render(true);
}
let drawn = "";
function render(force) {
  const first = Math.max(0, Math.floor(ladder.scrollTop / H) - OVERSCAN);
  const last = Math.min(shown.length, Math.ceil((ladder.scrollTop + ladder.clientHeight) / H) + OVERSCAN);
  const key = first + ":" + last;
  if (!force && key === drawn) return;
  drawn = key;
  let h = "";
  for (let p = first; p < last; p++) h += rowHTML(rows[shown[p]], p * H);
  spacer.innerHTML = h;
}
let pending = false;
ladder.addEventListener("scroll", () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; render(false); }); } });
window.addEventListener("resize", () => render(true));
$("filter").addEventListener("input", applyFilter);
$("dir").addEventListener("change", applyFilter);

// Selection, details and keyboard.
function select(k, open) {
  selected = k;
  const p = shown.indexOf(k);
  if (p >= 0) {
    const top = p * H, view = ladder.clientHeight - 22;
    if (top < ladder.scrollTop + 22) ladder.scrollTop = top - 22;
    else if (top + H > ladder.scrollTop + view) ladder.scrollTop = top + H - view;
  }
  render(true);
  if (open || $("detail").classList.contains("open")) showDetail(rows[k]);
}
spacer.addEventListener("click", (e) => {
  const el = e.target.closest(".row");
  if (el && !el.classList.contains("seg")) select(+el.dataset.k, true);
});
function move(delta) {
  let p = shown.indexOf(selected);
  if (p < 0) p = Math.floor(ladder.scrollTop / H) - delta;
  for (let q = p + delta; q >= 0 && q < shown.length; q += delta) if (rows[shown[q]].kind !== "seg") return select(shown[q], false);
}
function nextMark(delta) {
  const p = Math.max(-1, shown.indexOf(selected));
  for (let q = p + delta; q >= 0 && q < shown.length; q += delta) if (rows[shown[q]].marked) return select(shown[q], true);
}
document.addEventListener("keydown", (e) => {
  if (e.target === $("filter")) { if (e.key === "Escape" || e.key === "Enter") { $("filter").blur(); ladder.focus(); } return; }
  if (e.target.tagName === "SELECT") return;
  if (e.key === "j" || e.key === "ArrowDown") move(1);
  else if (e.key === "k" || e.key === "ArrowUp") move(-1);
  else if (e.key === "Enter") { const d = $("detail"); if (d.classList.contains("open")) d.classList.remove("open"); else if (selected >= 0) showDetail(rows[selected]); }
  else if (e.key === "Escape") $("detail").classList.remove("open");
  else if (e.key === "/") $("filter").focus();
  else if (e.key === "n") nextMark(1);
  else if (e.key === "N") nextMark(-1);
  else return;
  e.preventDefault();
});

function valueHTML(v, path, diffs) {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && "hex" in v && "names" in v)
    return esc(v.hex || "(empty)") + (v.names.length ? "  [" + esc(v.names.join(", ")) + "]" : "");
  if (v !== null && typeof v === "object" && Object.keys(v).length === 0) return "(none)";
  if (v !== null && typeof v === "object") return '<div class="nest">' + fieldsHTML(v, path, diffs) + "</div>";
  return esc(typeof v === "string" ? v : JSON.stringify(v));
}
function fieldsHTML(obj, path, diffs) {
  let h = "";
  for (const [k, v] of Object.entries(obj)) {
    const p = Array.isArray(obj) ? path + "[" + k + "]" : path ? path + "." + k : k;
    const hit = [...diffs].some((d) => d === p || d.startsWith(p + ".") || d.startsWith(p + "["));
    h += '<div class="f' + (hit ? " diff" : "") + '" data-path="' + esc(p) + '"><span class="k">' + esc(k) + ":</span> " + valueHTML(v, p, diffs) + "</div>";
  }
  return h;
}
function hexDump(hex) {
  let out = "";
  for (let o = 0; o < hex.length / 2; o += 16) {
    const part = hex.slice(o * 2, o * 2 + 32), bytes = part.match(/../g) || [];
    const ascii = bytes.map((b) => { const c = parseInt(b, 16); return c >= 32 && c < 127 ? String.fromCharCode(c) : "."; }).join("");
    out += o.toString(16).padStart(4, "0") + "  " + bytes.join(" ").padEnd(48) + "  " + ascii + "\n";
  }
  return '<pre class="hex">' + esc(out) + "</pre>";
}
function decodedHTML(d, diffs) {
  if (!d) return "";
  let h = fieldsHTML(d.fields || {}, "", diffs);
  if (d.error) h += '<div class="f difftext">error in ' + esc(d.error.field) + " at byte " + d.error.offset + ": " + esc(d.error.message) + "</div>";
  for (const w of d.warnings || []) h += '<div class="f">note: ' + esc(w) + "</div>";
  if (d.rest) h += '<div class="f">rest: ' + esc(d.rest) + "</div>";
  return h;
}
function diffPaths(detail) {
  return new Set((detail || "").split("; ").map((p) => p.split(": recorded")[0]).filter((p) => p && !p.includes(" ")));
}
function showDetail(row) {
  const d = $("detail");
  let h = "";
  if (row.kind === "msg") {
    const r = row.r;
    h += "<h2>#" + r.i + " " + esc(r.dir) + " " + esc(r.name) + " (" + (r.type ?? "-") + "), " + r.len + " bytes</h2>";
    h += '<div class="f">t = ' + secs(r.t_ns) + " s \u00b7 phase " + esc(r.phase_before) + " \u2192 " + esc(r.phase) + (r.channel ? " \u00b7 channel " + esc(r.channel) : "") + "</div>";
    for (const [cls, , full] of marks(row)) h += '<div class="f"><span class="mk mk-' + cls + '">' + esc(full) + "</span></div>";
    for (const c of r.phase_changes || []) h += '<div class="f"><span class="mk mk-phase">' + esc(c) + "</span></div>";
  }
  const steps = row.steps || [];
  const diffs = new Set();
  for (const s of steps) if (s.result === "diverged") diffPaths(s.detail).forEach((p) => diffs.add(p));
  if (row.kind === "ev") h += "<h2>" + esc(row.r.event) + '</h2><div class="f">' + esc(JSON.stringify(row.r, null, 1)) + "</div>";
  // The replay's verdict on this message comes first: the difference is what the reader is after.
  for (const s of steps) {
    h += "<h3>Replay step " + (s.step ?? "-") + ": " + esc(s.result) + " (" + esc(s.dir) + (s.name ? " " + esc(s.name) : "") + ", t = " + secs(s.t_ns) + " s)</h3>";
    if (s.detail) h += '<div class="f' + (s.result === "sent" || s.result === "matched" ? "" : " difftext") + '">' + esc(s.detail) + "</div>";
  }
  if (row.kind === "msg") h += '<h3>Decoded</h3><div class="decoded recorded">' + decodedHTML(row.r.decoded, diffs) + "</div>";
  const live = steps.filter((s) => s.decoded && s.hex !== (row.r && row.r.hex));
  for (const s of live) h += "<h3>Live message decoded</h3>" + '<div class="decoded live">' + decodedHTML(s.decoded, diffs) + "</div>";
  if (row.kind === "msg") h += "<h3>Hex</h3>" + hexDump(row.r.hex);
  for (const s of live) h += "<h3>Live message hex</h3>" + hexDump(s.hex);
  d.innerHTML = h;
  d.classList.add("open");
  d.scrollTop = 0;
}

function columnsHTML() {
  const m = (data.segments[0] && data.segments[0].meta) || {};
  const lane = (left, mid, right) => '<span class="lane" style="background:none;display:flex;justify-content:space-between">'
    + "<b>" + left + "</b><small>" + mid + "</small><b>" + right + "</b></span>";
  let h = '<span class="t">time (s)</span><span class="bands" style="width:' + bandSlots * 14 + 'px">phases</span>'
    + lane("a " + short(m.node_a), "lnrr", "b " + short(m.node_b));
  if (replay) h += lane(replay.side === "a" ? "lnrr as a" : "live a", "replay", replay.side === "b" ? "lnrr as b" : "live b");
  return h + '<span class="notes">marks</span>';
}

$("title").textContent = data.title;
document.title = data.title;
$("cols").innerHTML = columnsHTML();
if (replay) {
  $("verdict").textContent = "verdict: " + replay.verdict;
  $("verdict").className = replay.verdict;
}
applyFilter();
if (replay && replay.first_divergence != null) {
  const row = rows.find((r) => r.first);
  if (row) select(row.k, true);
}
document.documentElement.dataset.ready = "1";
window.lnrrLoadMs = performance.now();
</script>
</body>
</html>
"""#
}

#!/usr/bin/env python3
"""An lnrr plugin, written with pyln-client exactly as a Core Lightning plugin is.

Run it with:  lnrr record ... --plugin 'python3 tools/python/examples/tag_router.py'

It steers custom messages by the first byte of their payload (the "tag"):

  tag 0x01  continue            the message goes on unchanged
  tag 0x02  drop                the receiver never sees it
  tag 0x03  replace (hex)       the receiver gets 0x8003 + the rest of the payload reversed
  tag 0x04  replace (name)      the receiver gets a ping built from fields instead
  tag 0x05  inject before       a custom message 0x8005 "before" goes first, then the message
  tag 0x06  inject after        the message, then 0x8005 "after"
  other     continue

It also counts what it saw (the `tagstats` RPC method: `lnrr ctl --socket S tagstats`) and keeps
the sessions, phase changes and rule actions lnrr notifies it of.
"""
from pyln.client import Plugin

plugin = Plugin()
stats = {"messages": 0, "by_tag": {}, "sessions_started": 0, "sessions_ended": 0, "phases": [], "rules": []}


@plugin.hook("lnrr_message", filters=list(range(32768, 32768 + 64)))
def on_message(plugin, session, direction, peer_id, phase, type, name, payload, **kwargs):
    data = bytes.fromhex(payload)          # 2-byte type, then the payload
    tag = data[2] if len(data) > 2 else 0
    stats["messages"] += 1
    stats["by_tag"][str(tag)] = stats["by_tag"].get(str(tag), 0) + 1
    if tag == 0x02:
        return {"result": "drop"}
    if tag == 0x03:
        return {"result": "replace", "payload": "8003" + data[3:][::-1].hex()}
    if tag == 0x04:
        return {"result": "replace", "name": "ping", "fields": {"num_pong_bytes": 4, "ignored": data[3:].hex()}}
    if tag == 0x05:
        return {"result": "continue", "inject_before": ["8005" + b"before".hex()]}
    if tag == 0x06:
        return {"result": "continue", "inject_after": [{"payload": "8005" + b"after".hex()}]}
    return {"result": "continue"}


@plugin.subscribe("lnrr_session_start")
def on_session_start(plugin, lnrr_session_start, **kwargs):
    stats["sessions_started"] += 1


@plugin.subscribe("lnrr_session_end")
def on_session_end(plugin, lnrr_session_end, **kwargs):
    stats["sessions_ended"] += 1


@plugin.subscribe("lnrr_phase")
def on_phase(plugin, lnrr_phase, **kwargs):
    stats["phases"].append(lnrr_phase["change"])


@plugin.subscribe("lnrr_rule")
def on_rule(plugin, lnrr_rule, **kwargs):
    stats["rules"].append(lnrr_rule["action"])


@plugin.method("tagstats")
def tagstats(plugin):
    """What the plugin has seen so far, and (calling lnrr back on its control socket) how many
    sessions lnrr has now."""
    return dict(stats, live_sessions=len(plugin.rpc.listsessions()["sessions"]))


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    plugin.log(f"tag_router ready; lnrr's control socket is {configuration['rpc-file']}")


plugin.run()

#!/usr/bin/env python3
"""The smallest useful plugin: Core Lightning's custommsg hook, letting every message continue.

`tools/bench hook` measures lnrr's cost with it, against the same plugin fed straight from a pipe.
"""
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    return {"result": "continue"}


plugin.run()

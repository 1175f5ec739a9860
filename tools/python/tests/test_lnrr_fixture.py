"""The lnrr_proxy fixture between two pyln-proto nodes (Core Lightning's own BOLT 8 code).

Run by Tests/interop/test_pytest_plugin_pyln.py after `pip install ./tools/python` into a scratch
folder, so these also prove the package installs and pytest finds its plugin.
"""
import os
import secrets
import struct
import sys
import threading
from pathlib import Path

from pyln.proto.wire import LightningServerSocket, PrivateKey, PublicKey, connect

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tag_router.py"
INIT = struct.pack(">HHH", 16, 0, 0)


class Node:
    """A pyln-proto node: its secret, node id, and (for b) a listening socket."""

    def __init__(self, listen=False):
        self.secret = secrets.token_bytes(32)
        self.priv = PrivateKey(self.secret)
        self.node_id = self.priv.public_key().serializeCompressed().hex()
        self.conn = None
        if listen:
            self.server = LightningServerSocket(self.priv)
            self.server.bind(("127.0.0.1", 0))
            self.server.listen(1)
            self.accepted = threading.Event()
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.conn, _ = self.server.accept()
        self.accepted.set()

    @property
    def address(self):
        return f"{self.node_id}@127.0.0.1:{self.server.getsockname()[1]}"


def connected_pair(lnrr_proxy, **kwargs):
    a, b = Node(), Node(listen=True)
    proxy = lnrr_proxy(b_address=b.address, b_secret=b.secret, a_secret=a.secret, **kwargs)
    a.conn = connect(a.priv, PublicKey(bytes.fromhex(b.node_id)), proxy.host, proxy.port)
    assert b.accepted.wait(20), "b was never dialled"
    a.conn.send_message(INIT); assert b.conn.read_message() == INIT
    b.conn.send_message(INIT); assert a.conn.read_message() == INIT
    return proxy, a, b


def test_fixture_records_between_two_nodes_and_exposes_the_rpc(lnrr_proxy):
    proxy, a, b = connected_pair(lnrr_proxy)
    custom = struct.pack(">H", 32769) + b"hello b"
    a.conn.send_message(custom)
    assert b.conn.read_message() == custom
    # The control socket through pyln-client, as a Core Lightning test calls lightningd.
    [session] = proxy.rpc.listsessions()["sessions"]
    assert session["node_a"] == a.node_id and session["node_b"] == b.node_id and session["transparent"]
    proxy.rpc.call("sendcustommsg", {"node_id": a.node_id, "msg": "8003" + b"from lnrr".hex()})
    assert a.conn.read_message() == struct.pack(">H", 32771) + b"from lnrr"
    path = proxy.session_recording()
    a.conn.connection.close()
    proxy.stop()
    lines = proxy.show(path)
    hexes = [l["hex"] for l in lines if "hex" in l]
    assert custom.hex() in hexes and ("8003" + b"from lnrr".hex()) in hexes


def test_fixture_runs_plugins_and_their_rpc_methods(lnrr_proxy):
    proxy, a, b = connected_pair(lnrr_proxy, plugins=[f"{sys.executable} {EXAMPLE}"])
    a.conn.send_message(struct.pack(">H", 32769) + b"\x02dropped")
    a.conn.send_message(struct.pack(">H", 32769) + b"\x01kept")
    assert b.conn.read_message() == struct.pack(">H", 32769) + b"\x01kept"
    stats = proxy.rpc.call("tagstats")
    assert stats["by_tag"] == {"2": 1, "1": 1}


def test_lnrr_bin_comes_from_the_environment(lnrr_bin):
    assert lnrr_bin == os.environ["LNRR_BIN"]

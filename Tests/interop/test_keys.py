"""`lnrr keys`: node ids checked against pyln-proto's own key derivation."""
import os
import stat

from pyln.proto.wire import PrivateKey

from conftest import run


def node_id_of(secret_hex: str) -> str:
    return PrivateKey(bytes.fromhex(secret_hex)).public_key().serializeCompressed().hex()


def test_new_writes_owner_only_key_and_prints_its_node_id(lnrr, tmp_path):
    path = tmp_path / "alice.key"
    r = run(lnrr, "keys", "new", "--out", path)
    text = path.read_text()
    assert len(text) == 65 and text.endswith("\n") and all(c in "0123456789abcdef" for c in text[:64])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert r.stdout.strip() == node_id_of(text.strip())
    assert text.strip() not in r.stdout + r.stderr  # the secret is never printed
    assert run(lnrr, "keys", "id", path).stdout.strip() == node_id_of(text.strip())
    # Never overwrites.
    again = run(lnrr, "keys", "new", "--out", path, check=False)
    assert again.returncode == 2 and path.read_text() == text


def test_id_accepts_pasted_hex_with_whitespace(lnrr, tmp_path):
    secret = "11" * 32  # e.g. a value given to CLN's --dev-force-privkey
    path = tmp_path / "pasted.key"
    path.write_text(f"  {secret.upper()}\r\n\n")
    os.chmod(path, 0o600)
    assert run(lnrr, "keys", "id", path).stdout.strip() == node_id_of(secret)


def test_group_readable_key_is_refused_with_a_fix(lnrr, tmp_path):
    secret = "22" * 32
    path = tmp_path / "loose.key"
    path.write_text(secret + "\n")
    os.chmod(path, 0o644)
    r = run(lnrr, "keys", "id", path, check=False)
    assert r.returncode == 2
    assert "chmod 600" in r.stderr and secret not in r.stderr
    ok = run(lnrr, "keys", "id", "--insecure-keys", path)
    assert ok.stdout.strip() == node_id_of(secret)


def test_bad_key_files(lnrr, tmp_path):
    for name, content in [("short", "abcd"), ("nothex", "zz" * 32), ("zero", "00" * 32),
                          ("order", "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")]:
        path = tmp_path / f"{name}.key"
        path.write_text(content + "\n")
        os.chmod(path, 0o600)
        r = run(lnrr, "keys", "id", path, check=False)
        assert r.returncode == 2, (name, r.stdout)
        assert r.stderr.strip() and content not in r.stderr, (name, r.stderr)
    missing = run(lnrr, "keys", "id", tmp_path / "nope.key", check=False)
    assert missing.returncode == 2 and "nope.key" in missing.stderr

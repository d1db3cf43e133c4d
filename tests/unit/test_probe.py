"""The probe: mirrors judged by the signed stamps they serve over HTTP."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec, load_fleet_config, probe_fleet
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.tree.keys import public_key_text
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp

KEY = Ed25519PrivateKey.generate()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """One HTTP server; each top-level folder is a tree (origin, mirror a, b, ...)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


def put_stamp(root: Path, tree: str, serial: int, key: Ed25519PrivateKey = KEY) -> None:
    path = root / tree / STAMP_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        Stamp(serial=serial, ts=1_700_000_000 + serial, origin="origin", expires=2**32).sign(key)
    )


def spec(base: str, label: str) -> MirrorSpec:
    return MirrorSpec(label=label, target=f"{label}.example.net", url=f"{base}/{label}/")


def test_each_mirror_is_judged_by_its_verified_stamp(served) -> None:
    base, root = served
    put_stamp(root, "origin", 5)
    put_stamp(root, "ahead", 6)
    put_stamp(root, "fresh", 5)
    put_stamp(root, "behind", 4)
    put_stamp(root, "forged", 5, key=Ed25519PrivateKey.generate())
    (root / "nostamp").mkdir()
    labels = ["ahead", "fresh", "behind", "forged", "nostamp"]
    mirrors = [spec(base, label) for label in labels]
    mirrors.append(MirrorSpec("dead", "dead.example.net", f"http://127.0.0.1:{free_port()}/"))
    config = FleetConfig(f"{base}/origin/", (public_key_text(KEY),), tuple(mirrors), timeout=2)
    state = probe_fleet(config, now=1_800_000_000)
    assert state["stamp"]["signed"]["serial"] == 5
    seen = {m["label"]: (m["state"], m["serial"]) for m in state["mirrors"]}
    assert seen == {
        "ahead": ("fresh", 6),
        "fresh": ("fresh", 5),
        "behind": ("lagging", 4),
        "forged": ("down", 0),
        "nostamp": ("down", 0),
        "dead": ("down", 0),
    }
    assert {m["chk"] for m in state["mirrors"]} == {1_800_000_000}


def test_without_a_valid_origin_stamp_nothing_is_published(served) -> None:
    base, root = served
    put_stamp(root, "origin", 5, key=Ed25519PrivateKey.generate())
    config = FleetConfig(f"{base}/origin/", (public_key_text(KEY),), (), timeout=2)
    with pytest.raises(MirrorfleetError, match=r"origin: .* rejected"):
        probe_fleet(config)


GOOD = f'origin_url = "http://origin/"\npublic_keys = ["{public_key_text(KEY)}"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "[[mirrors]]\nlabel = 'Mirror One'\ntarget = 'm'\nurl = 'http://m/'\n", "label"),
        (GOOD + "[[mirrors]]\nlabel = 'm1'\nurl = 'http://m/'\n", "missing required key"),
        (GOOD + "[[mirrors]]\nlabel='m1'\ntarget='m'\nurl='u'\nweight='x'\n", "weight must be"),
        (GOOD + "mirrors = 3\n", "array of tables"),
        ('origin_url = "http://o/"\npublic_keys = ["bm90IGEga2V5"]\n', "bad Ed25519 public key"),
        ('origin_url = "http://o/"\npublic_keys = []\n', "at least one key"),
        ("origin_url = [", "unreadable"),
    ],
)
def test_bad_fleet_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(MirrorfleetError, match=message):
        load_fleet_config(path)


def test_fleet_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        GOOD + "[[mirrors]]\nlabel = 'm1'\ntarget = 'm1.example'\nurl = 'http://m1/'\n"
        "weight = 50\nregion = 'eu'\n"
    )
    config = load_fleet_config(path)
    assert config.mirrors == (MirrorSpec("m1", "m1.example", "http://m1/", weight=50, region="eu"),)


def test_a_bad_change_record_does_not_hide_the_head(served) -> None:
    """Spot checks draw from the change records; the head counts even when one is broken."""
    from mirrorfleet.probe.observe import fetch_head
    from mirrorfleet.tree.changes import changes_path

    base, root = served
    put_stamp(root, "origin", 7)
    record = root / "origin" / changes_path(7)
    record.parent.mkdir(parents=True)
    record.write_text('{"signed": {}, "key": "x", "sig": "AA=="}')
    config = FleetConfig(f"{base}/origin/", (public_key_text(KEY),), (), timeout=2)
    head = fetch_head(config)
    assert head.stamp.serial == 7 and head.pool == ()

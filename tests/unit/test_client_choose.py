"""choose() on loopback HTTP: the stamp decides, and --probe prefers the fastest."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.client.choose import MaxLag, NoFreshMirror, choose
from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp

KEY = Ed25519PrivateKey.generate()
HEAD = Stamp(serial=5, ts=1_700_000_500, origin="origin", expires=2**32)
SLOW = 0.2


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _maybe_wait(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(SLOW)

    def do_HEAD(self) -> None:
        self._maybe_wait()
        super().do_HEAD()

    def do_GET(self) -> None:
        self._maybe_wait()
        super().do_GET()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("mirrors")
    for name, serial in (("slow", 5), ("fast", 5), ("behind", 4)):
        path = root / name / STAMP_PATH
        path.parent.mkdir(parents=True)
        path.write_bytes(Stamp(serial, HEAD.ts - 5 + serial, "origin", expires=2**32).sign(KEY))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def listed(base: str, name: str, weight: int, state: str = "fresh", serial: int = 5) -> Listed:
    url = f"{base}/{name}/"
    return Listed(
        f"{name}.example.net",
        80,
        10 if state == "fresh" else 20,
        weight,
        state,
        serial,
        HEAD.ts - 5 + serial,
        HEAD.ts,
        url,
    )


def discovery(*mirrors: Listed) -> Discovery:
    return Discovery("mirrors.test.", HEAD, mirrors)


def test_weight_decides_without_a_probe(base: str) -> None:
    found = discovery(listed(base, "slow", 1000), listed(base, "fast", 1))
    picks = [choose(found, [KEY.public_key()], rng=random.Random(s)).mirror for s in range(10)]
    assert sum(m.target == "slow.example.net" for m in picks) >= 9


def test_a_probe_takes_the_fastest(base: str) -> None:
    found = discovery(listed(base, "slow", 1000), listed(base, "fast", 1))
    for seed in range(3):
        choice = choose(found, [KEY.public_key()], rng=random.Random(seed), probe=2)
        assert choice.mirror.target == "fast.example.net"


def test_dns_saying_fresh_is_not_enough_without_the_stamp(base: str) -> None:
    lying = listed(base, "behind", 100)  # DNS says serial 5; it serves 4
    with pytest.raises(NoFreshMirror, match="its stamp says serial 4, DNS says 5"):
        choose(discovery(lying), [KEY.public_key()], rng=random.Random(0))


@pytest.mark.parametrize(
    ("max_lag", "accepted"),
    [
        (MaxLag(), False),
        (MaxLag(serials=1), True),
        (MaxLag(seconds=0), False),
        (MaxLag(seconds=1), True),
    ],
    ids=["default", "1-serial", "0s", "1s"],
)
def test_max_lag_by_serials_or_seconds(base: str, max_lag: MaxLag, accepted: bool) -> None:
    behind = listed(base, "behind", 100, state="lagging", serial=4)
    found = discovery(behind)
    if accepted:
        assert choose(found, [KEY.public_key()], max_lag, random.Random(0)).stamp.serial == 4
    else:
        with pytest.raises(NoFreshMirror):
            choose(found, [KEY.public_key()], max_lag, random.Random(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", MaxLag(serials=2)),
        ("300s", MaxLag(seconds=300)),
        ("5m", MaxLag(seconds=300)),
        ("1h", MaxLag(seconds=3600)),
        (None, MaxLag()),
    ],
)
def test_max_lag_parses(text: str | None, expected: MaxLag) -> None:
    assert MaxLag.parse(text) == expected


@pytest.mark.parametrize("text", ["-1", "5x", "", "1.5"])
def test_bad_max_lag_is_a_clear_error(text: str) -> None:
    with pytest.raises(MirrorfleetError, match="--max-lag"):
        MaxLag.parse(text)

"""Bad input gets a clear error, and nothing is lost.

Each case feeds one kind of bad input to the real code (real pyinfra, rsync and HTTP
on loopback) and asserts both the specific message and that nothing was changed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.agent import sync
from mirrorfleet.client.choose import NoFreshMirror, choose
from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.client.projects import ChangesUnavailable, fetch_changes
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.control.inventory import validate_groups
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.fetch import MAX_PAGE, SpotCheckFailed
from mirrorfleet.probe.observe import Head, MirrorSpec, load_fleet_config, observe, record
from mirrorfleet.probe.spotcheck import Candidate, candidates_from_records, spot_check
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.changes import MAX_RECORD, ChangeRecord, changes_path
from mirrorfleet.tree.keys import SecretsDir, init_secrets, load_signing_key, public_key_text
from mirrorfleet.tree.manifest import MAX_SHARD, shard_path
from mirrorfleet.tree.seal import seal
from mirrorfleet.tree.signed import sign
from mirrorfleet.tree.stamp import MAX_STAMP, STAMP_PATH, Stamp, read_local_stamp
from mirrorfleet.zone import records

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
DEPLOY = Path(__file__).resolve().parents[2] / "deploy.py"
HUGE = 1024**3  # sparse: costs no disk, and would cost a GiB of memory if read whole


def tree_listing(tree: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every symlink's target: what "nothing changed" compares."""
    return {
        str(p.relative_to(tree)): os.readlink(p) if p.is_symlink() else p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


class Recorder(SimpleHTTPRequestHandler):
    """Serves a folder and records every path asked for."""

    paths: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.paths.append(self.path)
        super().do_GET()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up on a huge file is the point of those tests


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served root, requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    paths: list[str] = []
    handler = type("Handler", (Recorder,), {"paths": paths})
    server = QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, paths
    finally:
        server.shutdown()
        server.server_close()


# --- 1. Inventory: refused as it loads, before any SSH connection -------------------

GOOD = {
    "origin": ["o.example.org"],
    "mirrors": ["m1.example.org"],
    "dns": [("ns1", {"dns_role": "primary"})],
    "monitor": ["mon.example.org"],
}
ZONE = {"all": {"mirror_zone": "mirrors.example.org"}}


def test_good_groups_and_data_pass(secrets_dir: SecretsDir) -> None:
    """The control for the cases below: weights at both ends, a zone, full secrets."""
    mirrors = [("m1", {"mirror_weight": 0}), ("m2", {"mirror_weight": 65535})]
    data = {"all": {"mirror_zone": "mirrors.example.org.", "secrets_dir": str(secrets_dir.path)}}
    validate_groups({**GOOD, "mirrors": mirrors}, data, check_secrets=True)


@pytest.mark.parametrize(
    ("change", "data", "message"),
    [
        ({"mirrors": [("m1", {"mirror_weight": 65536})]}, ZONE, "mirror_weight 65536, not a whole"),
        ({"mirrors": [("m1", {"mirror_weight": -1})]}, ZONE, "mirror_weight -1, not a whole"),
        ({"mirrors": [("m1", {"mirror_weight": True})]}, ZONE, "mirror_weight True, not a whole"),
        ({"mirrors": [("m1", {"mirror_weight": "10"})]}, ZONE, "mirror_weight '10', not a whole"),
        ({"mirrors": [("m1", {"mirror_weight": 1.5})]}, ZONE, "mirror_weight 1.5, not a whole"),
        ({}, {"mirrors": {"mirror_weight": 10**6}, **ZONE}, "mirror_weight 1000000"),
        ({}, {}, "'ns1' needs mirror_zone"),
        ({"dns": []}, {}, "'mon.example.org' needs mirror_zone"),
        ({}, {"all": {"mirror_zone": ""}}, "'ns1' needs mirror_zone"),
        ({}, {"all": {"mirror_zone": "mirrors example"}}, "not a DNS name"),
        ({}, {"all": {"mirror_zone": "a;b.example"}}, "not a DNS name"),
    ],
    ids=[
        "weight-65536",
        "weight-negative",
        "weight-bool",
        "weight-str",
        "weight-float",
        "weight-from-group-data",
        "zone-missing-dns",
        "zone-missing-monitor",
        "zone-empty",
        "zone-space",
        "zone-semicolon",
    ],
)
def test_bad_host_data_is_rejected(change: dict, data: dict, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        validate_groups({**GOOD, **change}, data)


def test_missing_or_incomplete_secrets_dir_is_rejected(tmp_path: Path) -> None:
    absent = {"all": {**ZONE["all"], "secrets_dir": str(tmp_path / "nope")}}
    with pytest.raises(MirrorfleetError, match=r"secrets_dir '.*nope' is not a folder"):
        validate_groups(GOOD, absent, check_secrets=True)
    partial = tmp_path / "partial"
    init_secrets(partial)
    (partial / "ping.secret").unlink()
    lacking = {"all": {**ZONE["all"], "secrets_dir": str(partial)}}
    with pytest.raises(MirrorfleetError, match=r"lacks ping\.secret: run `mirrorfleet keys init"):
        validate_groups(GOOD, lacking, check_secrets=True)
    validate_groups(GOOD, lacking, check_secrets=False)  # debug-inventory, exec, fact


def test_zone_and_secrets_are_not_required_without_group_data() -> None:
    """Outside pyinfra nobody loads group_data/, so keys that live there are not missing."""
    validate_groups(GOOD)


HOST = "m1.example.invalid"


def _inventory(groups: str, port: int) -> str:
    ssh = f"{{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}, 'ssh_user': 'root'}}"
    return (
        "from mirrorfleet.control.inventory import module_groups, validate_groups\n"
        f"SSH = {ssh}\n"
        f"{groups}\n"
        "validate_groups(module_groups(globals()))\n"
    )


ALL = "mirror_zone = 'mirrors.example.org'"
# (inventory groups, group_data/all.py, deploy file instead of `exec -- true`, message)
BAD_INVENTORIES = {
    "duplicate": (f"mirrors = [('{HOST}', SSH), ('{HOST}', SSH)]", ALL, False, "listed twice"),
    "hostname": ("mirrors = [('bad_name', SSH)]", ALL, False, "not a valid host name"),
    "weight": (
        f"mirrors = [('{HOST}', {{**SSH, 'mirror_weight': 70000}})]",
        ALL,
        False,
        "mirror_weight 70000",
    ),
    "zone-missing": (f"monitor = [('{HOST}', SSH)]", "", False, "needs mirror_zone"),
    "zone-in-group-data": (
        f"monitor = [('{HOST}', SSH)]",
        "mirror_zone = 'bad zone'",
        False,
        "not a DNS name",
    ),
    "secrets-missing": (
        f"origin = [('{HOST}', SSH)]",
        f"{ALL}\nsecrets_dir = 'no-such-folder'",
        True,
        "secrets_dir 'no-such-folder' is not a folder",
    ),
}


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on 127.0.0.1 standing in for sshd; counts the connections it gets."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _addr = sock.accept()
            except TimeoutError:
                continue
            accepted.append(_addr)
            conn.close()  # no SSH banner: the client gives up at once

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def _run_pyinfra(
    tmp_path: Path, port: int, groups: str, all_data: str, deploy: bool
) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inv.py"
    inventory.write_text(_inventory(groups, port))
    (tmp_path / "group_data").mkdir(exist_ok=True)
    (tmp_path / "group_data" / "all.py").write_text(all_data + "\n")
    command = [str(DEPLOY)] if deploy else ["exec", "--", "true"]
    return subprocess.run(
        [PYINFRA, "-y", str(inventory), *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def _connections_after(accepted: list[object], port: int) -> int:
    """What the listener got, after a last short non-blocking look at its queue."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        probe.connect(("127.0.0.1", port))  # our own marker: it is accepted last
    for _ in range(50):
        if accepted:
            break
        threading.Event().wait(0.02)
    return len(accepted) - 1  # less our marker


@pytest.mark.parametrize("case", list(BAD_INVENTORIES))
def test_bad_inventory_makes_no_connection(
    tmp_path: Path, listener: tuple[int, list[object]], case: str
) -> None:
    port, accepted = listener
    groups, all_data, deploy, message = BAD_INVENTORIES[case]
    proc = _run_pyinfra(tmp_path, port, groups, all_data, deploy)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert _connections_after(accepted, port) == 0


@pytest.mark.parametrize("deploy", [False, True], ids=["exec", "deploy"])
def test_good_inventory_does_connect(
    tmp_path: Path, listener: tuple[int, list[object]], deploy: bool
) -> None:
    """The control: the same setup with good input reaches the listener, so the test above
    would see a connection if validation let a bad inventory through."""
    port, accepted = listener
    init_secrets(tmp_path / "secrets")
    groups = f"origin = [('{HOST}', SSH)]\nmonitor = [('mon.example.invalid', SSH)]"
    all_data = f"{ALL}\nsecrets_dir = {str(tmp_path / 'secrets')!r}"
    proc = _run_pyinfra(tmp_path, port, groups, all_data, deploy)
    assert "bad inventory" not in proc.stdout + proc.stderr
    assert _connections_after(accepted, port) >= 1


# --- 2. Stamps: refused by the agent, the monitor and the client -----------------------


def _flip(raw: bytes) -> bytes:
    """One bit of the signed origin name, however the envelope is laid out."""
    match = re.search(rb'"origin": ?"', raw)
    assert match is not None
    at = match.end()
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


BAD_STAMPS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "flipped-byte": (_flip, r"signature by key \w+ does not verify"),
    "truncated": (lambda raw: raw[: len(raw) // 2], "not a signed document"),
    "empty": (lambda raw: b"", "not a signed document"),
    "wrong-key": (
        lambda raw: Stamp(2, 1, "origin", expires=2**32).sign(Ed25519PrivateKey.generate()),
        "signed by unknown key",
    ),
    # valid and correctly signed, padded with JSON whitespace: only the size is wrong
    "huge": (lambda raw: raw + b" " * MAX_STAMP, f"larger than {MAX_STAMP} bytes"),
}


@pytest.mark.parametrize("case", list(BAD_STAMPS))
def test_bad_stamp_is_refused_everywhere_and_the_mirror_keeps_its_tree(
    case: str,
    agent_config: AgentConfig,
    origin_config: OriginConfig,
    upstream: LoopbackUpstream,
    add_project: Callable[[Path, str, str], None],
) -> None:
    assert sync.sync_once(agent_config).serial == 1
    before = tree_listing(agent_config.tree)
    add_project(origin_config.tree, "proj9", "1.0")  # what a wrongly accepted sync would copy
    assert publish(origin_config, ping=False).serial == 2
    stamp_file = origin_config.tree / STAMP_PATH
    good = stamp_file.read_bytes()
    corrupt, message = BAD_STAMPS[case]
    stamp_file.write_bytes(corrupt(good))
    keys = [load_signing_key(origin_config.signing_key).public_key()]

    result = sync.sync_once(agent_config)
    assert (result.status, result.serial) == ("error", 1)
    assert re.search(message, result.error), result.error
    assert tree_listing(agent_config.tree) == before
    assert read_local_stamp(agent_config.tree, keys).serial == 1  # type: ignore[union-attr]

    head = Head(Stamp(2, 1, "origin", expires=2**32), good)
    seen = observe(MirrorSpec("origin", "origin.test", upstream.http_url), head, keys, 5, 0)
    assert seen.verdict == "bad" and seen.stamp is None
    assert re.search(message, seen.error or ""), seen.error

    listed = Listed("origin.test", 80, 10, 100, "fresh", 2, 1, 1, upstream.http_url)
    found = Discovery("mirrors.test.", Stamp(2, 1, "origin", expires=2**32), (listed,))
    with pytest.raises(NoFreshMirror, match=message):
        choose(found, keys, rng=random.Random(0))


# --- 3. Huge manifest shard, index page, change record: bounded reads --------- ---------


def _sparse(path: Path, size: int = HUGE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(size)


@pytest.fixture
def mirror_http(
    http: tuple[str, Path, list[str]], origin_config: OriginConfig
) -> tuple[str, Path, list[str], list]:
    """The published origin tree copied to /m/ of the HTTP server: (base, tree, paths, keys)."""
    base, root, paths = http
    publish(origin_config, ping=False)
    tree = root / "m"
    subprocess.run(["cp", "-a", f"{origin_config.tree}/.", str(tree)], check=True)
    keys = [load_signing_key(origin_config.signing_key).public_key()]
    return f"{base}/m/", tree, paths, keys


def _peak(call: Callable[[], object]) -> int:
    """Peak memory traced while call runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        call()
    except Exception:
        pass  # the callers assert the error themselves
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("which", ["shard", "page"])
def test_huge_shard_or_page_is_a_bad_verdict_read_within_bounds(mirror_http, which: str) -> None:
    base, tree, _paths, keys = mirror_http
    _sparse(tree / (shard_path("proj0") if which == "shard" else "simple/proj0/index.html"))
    stamp = read_local_stamp(tree, keys)
    assert stamp is not None
    head = Head(stamp, (tree / STAMP_PATH).read_bytes(), (Candidate("proj0", 1),))
    spec = MirrorSpec("m", "m.test", base)
    seen: list = []
    peak = _peak(lambda: seen.append(observe(spec, head, keys, 5, spot_checks=1)))
    assert seen[0].verdict == "bad"
    limit = MAX_SHARD if which == "shard" else MAX_PAGE
    assert f"is larger than {limit} bytes" in seen[0].error
    assert peak < 4 * limit  # the GiB behind it was never read


def test_huge_change_record_is_refused_by_the_monitor_within_bounds(mirror_http) -> None:
    base, tree, _paths, keys = mirror_http
    _sparse(tree / changes_path(3))

    def read() -> object:
        return candidates_from_records(base, keys, 5, head=3, since=2)

    with pytest.raises(SpotCheckFailed, match=f"3.json is larger than {MAX_RECORD} bytes"):
        read()
    assert _peak(read) < 4 * MAX_RECORD


def test_huge_change_record_is_refused_within_bounds(mirror_http) -> None:
    base, tree, _paths, keys = mirror_http
    _sparse(tree / changes_path(1))
    head = Stamp(1, 1, "origin", expires=2**32)
    with pytest.raises(ChangesUnavailable, match=f"larger than {MAX_RECORD} bytes"):
        fetch_changes(base, head, 0, keys, 5)
    assert _peak(lambda: fetch_changes(base, head, 0, keys, 5)) < 4 * MAX_RECORD


# --- 4. Symlinks and ../ out of the tree ---------------------------------------------


@pytest.mark.parametrize("via", ["rsync-daemon", "local-path"])
def test_agent_never_copies_a_symlink_out_of_the_tree(
    tmp_path: Path, agent_config: AgentConfig, origin_config: OriginConfig, via: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "key").write_text("top secret\n")
    packages = origin_config.tree / "packages"
    (packages / "evil-abs").symlink_to(secret)
    (packages / "evil-rel").symlink_to("../../secret.txt")
    (packages / "evil-dir").symlink_to("../../outside")
    (packages / "evil-deep").symlink_to("proj0/../../../secret.txt")
    (packages / "in-tree").symlink_to("proj0/proj0-1.0.tar.gz")  # the control
    publish(origin_config, force=True, ping=False)
    if via == "local-path":
        agent_config = replace(agent_config, upstream_rsync=str(origin_config.tree))
    result = sync.sync_once(agent_config)
    assert result.status == "synced", result.error
    copied = tree_listing(agent_config.tree)
    assert not [p for p in copied if "evil" in p]
    assert not [p for p, data in copied.items() if data == b"top secret\n"]
    if via == "local-path":  # the daemon munges every link (no chroot), so it drops all
        assert copied["packages/in-tree"] == "proj0/proj0-1.0.tar.gz"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside-tree"
    outside.mkdir(exist_ok=True)
    (outside / "index.html").write_text("<html>not the origin's</html>\n")
    return outside


@pytest.mark.parametrize(
    "link",
    [
        lambda tree, out: (tree / "simple/evil").symlink_to(out),
        lambda tree, out: (tree / "simple/evil").symlink_to(os.path.relpath(out, tree / "simple")),
        lambda tree, out: (
            (tree / "simple/proj0/index.html").unlink(),
            (tree / "simple/proj0/index.html").symlink_to(out / "index.html"),
        ),
    ],
    ids=["absolute-dir", "relative-dir", "page"],
)
def test_publish_refuses_a_page_symlinked_out_of_the_tree(
    tmp_path: Path, origin_config: OriginConfig, link: Callable[[Path, Path], object]
) -> None:
    publish(origin_config, ping=False)
    before = tree_listing(origin_config.tree / ".mirror")
    link(origin_config.tree, _outside(tmp_path))
    with pytest.raises(MirrorfleetError, match=r"refusing to publish: simple/\w+/index.html "):
        publish(origin_config, ping=False)
    assert tree_listing(origin_config.tree / ".mirror") == before


def test_publish_accepts_a_symlink_inside_the_tree(origin_config: OriginConfig) -> None:
    """The control: an alias within the tree is content like any other."""
    (origin_config.tree / "simple/alias").symlink_to("proj0")
    assert "alias" in publish(origin_config, ping=False).changed


TRAVERSALS = ["../../secret", "x/../../../secret", "%2e%2e/%2e%2e/secret", "..", "a?b", ""]


def _hostile_shards(tree: Path, key: Ed25519PrivateKey, page: bytes) -> None:
    """Signed shards listing each hostile name, so only the name check stops a fetch."""
    by_shard: dict[str, dict[str, list]] = {}
    digest = hashlib.sha256(page).hexdigest()
    for name in TRAVERSALS:
        by_shard.setdefault(shard_path(name), {})[name] = [1, digest]
    for path, projects in by_shard.items():
        (tree / path).write_bytes(sign({"v": 1, "serial": 1, "projects": projects}, key))
    seal(tree, key, 1, "origin")


def test_project_names_from_the_records_never_leave_the_tree(
    mirror_http, origin_config: OriginConfig, caplog: pytest.LogCaptureFixture
) -> None:
    base, tree, paths, keys = mirror_http
    secret = tree.parent / "secret" / "index.html"
    secret.parent.mkdir()
    secret.write_bytes(b"<html></html>\n")
    key = load_signing_key(origin_config.signing_key)
    _hostile_shards(tree, key, secret.read_bytes())
    record = ChangeRecord(1, [*TRAVERSALS, "proj0"])
    (tree / changes_path(1)).write_bytes(record.sign(key))
    with caplog.at_level(logging.WARNING, logger="mirrorfleet.spotcheck"):
        pool = candidates_from_records(base, keys, 5, head=1)
    assert pool == [Candidate("proj0", 1)]
    assert "'../../secret' is not a project name; not checked" in caplog.text
    hostile = [Candidate(name, 1) for name in TRAVERSALS]  # a pool made some other way
    stamp = read_local_stamp(tree, keys)
    assert spot_check(base, stamp, hostile, keys, 5, len(hostile), 1024, random.Random(0)) == 0
    assert [p for p in paths if not p.startswith("/m/")] == []


@pytest.mark.parametrize("href", ["../../../secret/f", "http://localhost:1/secret/f"])
def test_a_page_linking_out_of_the_tree_is_not_followed(
    mirror_http, origin_config: OriginConfig, href: str
) -> None:
    base, tree, paths, keys = mirror_http
    page = f'<a href="{href}#sha256={"0" * 64}">f</a>\n'.encode()
    (tree / "simple/proj0/index.html").write_bytes(page)
    key = load_signing_key(origin_config.signing_key)
    projects = {"proj0": [1, hashlib.sha256(page).hexdigest()]}
    doc = {"v": 1, "serial": 1, "projects": projects}
    (tree / shard_path("proj0")).write_bytes(sign(doc, key))
    seal(tree, key, 1, "origin")
    pool = [Candidate("proj0", 1)]
    stamp = read_local_stamp(tree, keys)
    assert spot_check(base, stamp, pool, keys, 2, 1, 1024, random.Random(0)) == 1
    # the snapshot, the shard, the signed page, the folder as pip and as uv ask; nothing outside
    folder = "/m/simple/proj0/"
    shard = "/m/" + shard_path("proj0")
    assert paths == ["/m/.mirror/snapshot.json", shard, f"{folder}index.html", folder, folder]


def test_change_record_names_are_data_never_urls(mirror_http, origin_config: OriginConfig) -> None:
    """The client reads changes/<serial>.json only; the names inside go nowhere near a URL."""
    base, tree, paths, keys = mirror_http
    names = ["../../secret", "/etc/passwd", "%2e%2e", "http://elsewhere/"]
    key = load_signing_key(origin_config.signing_key)
    raw = sign({"v": 1, "serial": 2, "changed": names}, key)
    (tree / changes_path(2)).write_bytes(raw)
    head = Stamp(2, 1, "origin", expires=2**32, record=hashlib.sha256(raw).hexdigest())
    assert fetch_changes(base, head, 1, keys, 5) == {2: frozenset(names)}
    assert paths == ["/m/" + changes_path(2)]


# --- 5. Hostile labels, regions, weights and URLs on their way into TXT/SRV ----------

HOSTILE = ['m"1', "m;1", "m\n1", "m 1", "m\u00e91", "m" * 64, "", "-m1", "M1"]
FLEET_KEY = public_key_text(Ed25519PrivateKey.generate())
FLEET = f'origin_url = "http://origin/"\npublic_keys = ["{FLEET_KEY}"]\n'


def _fleet(tmp_path: Path, **mirror: object) -> Path:
    fields = {"label": "m1", "target": "m1.example.net", "url": "http://m1.example.net/", **mirror}
    body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items())
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET + "[[mirrors]]\n" + body)
    return path


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_label_in_the_fleet_config_is_refused_as_it_loads(
    tmp_path: Path, label: str
) -> None:
    with pytest.raises(MirrorfleetError, match=r"mirrors\[0\] label .* is not a DNS label"):
        load_fleet_config(_fleet(tmp_path, label=label))


def _publish_records(path: Path) -> list[records.RecordSet]:
    """Fleet config -> the records the monitor would write, with no DNS server involved."""
    stamp = Stamp(serial=3, ts=1_700_000_000, origin="origin", expires=2**32)
    key = Ed25519PrivateKey.generate()
    signature = base64.b64decode(json.loads(stamp.sign(key))["sig"])
    head = records.head_rrset(stamp, signature, "0" * 16, ttl=60)
    mirrors = [record(s, "fresh", stamp, 1) for s in load_fleet_config(path).mirrors]
    return records.desired_records("mirrors.example.org.", head, mirrors, owner="fleet")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        *[("region", bad, "region .* is not a DNS label") for bad in HOSTILE if bad],
        ("url", "http://m1/\n", "is not printable ASCII"),
        ("url", "http://m1/a b", "is not printable ASCII"),
        ("url", 'http://m1/"', "is not printable ASCII"),
        ("url", "http://m\u00e91/", "is not printable ASCII"),
        ("weight", 65536, "weight 0-65535"),
        ("weight", -1, "weight 0-65535"),
        ("weight", True, "weight must be an integer, got True"),
        ("port", 0, "port 1-65535"),
    ],
)
def test_hostile_values_never_reach_a_record(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        _publish_records(_fleet(tmp_path, **{field: value}))


def test_a_bool_weight_is_refused_by_the_schema_itself() -> None:
    """records.py is the last gate; True passed 0 <= w <= 65535 and reached dnspython."""
    mirror = records.MirrorRecord("m1", "m1.example.net", "fresh", 1, 1, 1, "http://m1/")
    with pytest.raises(MirrorfleetError, match="weight 0-65535 and port 1-65535"):
        records.srv_rrsets([replace(mirror, weight=True)], ttl=60)
    assert records.srv_rrsets([mirror], ttl=60)[0].values == ("10 100 80 m1.example.net.",)

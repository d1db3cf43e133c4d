"""What issue 19's trust costs in bytes: per sync, per client check, and the heartbeat
of an idle fleet.

Every document is made by the real code at PyPI's size (256 manifest shards, ~2,400
projects each), before (stamp v1: serial, ts, origin; records without `prev`; no
snapshot) and after. The HTTP exchanges of one heartbeat are measured on loopback
through a byte-counting TCP relay, against the real ping sender and stamp reader:

- the origin's ping to the agent, the agent's GET of the stamp (no rsync: the cheap
  path), the agent's ping to the monitor, the monitor's GET of the mirror's stamp;
- and the DNS update the monitor then sends: the head TXT and each mirror's meta TXT
  (its stamp time moved), sized as dnspython renders them.

The floor ("limit") is the information itself: one signed stamp to each mirror.

    .venv/bin/python bench/trust_bench.py [--mirrors 1000] [--heartbeat 300] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.update
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mirrorfleet.notify.ping import send_ping
from mirrorfleet.tree.changes import ChangeRecord, Written
from mirrorfleet.tree.keys import key_id
from mirrorfleet.tree.signed import sign
from mirrorfleet.tree.snapshot import Entry, Snapshot
from mirrorfleet.tree.stamp import Stamp, fetch_stamp
from mirrorfleet.tree.trust import certify, new_document
from mirrorfleet.zone.records import MirrorRecord, head_rrset, meta_rrset, txt_value

KEY = Ed25519PrivateKey.generate()
SHARD_BYTES = 260_000  # 600k projects / 256 shards x ~110 bytes an entry
SERIAL = 26_000_000  # PyPI's serials are in the tens of millions


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def documents() -> dict[str, int]:
    """Sizes of what a sync and a client check read, before and after."""
    now = int(time.time())
    v1_stamp = sign({"serial": SERIAL, "ts": now, "origin": "origin", "v": 1}, KEY)
    v2_stamp = Stamp(SERIAL, now, "origin", now + 1800, h("s"), h("r"), 3).sign(KEY)
    snapshot = Snapshot(SERIAL, {f"{i:02x}": Entry(h(str(i)), SHARD_BYTES) for i in range(256)})
    release = [  # one upload: a wheel, its .metadata, the sdist, both pages, its shard, trace
        Written("packages/ab/cd/demo-1.0-py3-none-any.whl", 120_000),
        Written("packages/ab/cd/demo-1.0-py3-none-any.whl.metadata", 2_000),
        Written("packages/ab/cd/demo-1.0.tar.gz", 90_000),
        Written("simple/demo/index.html", 4_000, h("p")),
        Written("simple/demo/index.v1_json", 5_000, h("j")),
        Written(".mirror/manifest/ab.json", SHARD_BYTES, h("m")),
        Written(".mirror/trace/origin", 90, h("t")),
    ]
    v3 = ChangeRecord(SERIAL, ["demo"], release, [], True, 20_000, prev=h("prev"))
    v3_raw = v3.sign(KEY)
    v2_data = json.loads(v3_raw)["signed"]
    v2_data.pop("prev")
    v2_data["v"] = 2
    v2_raw = sign(v2_data, KEY)
    roots = [Ed25519PrivateKey.generate() for _ in range(3)]
    doc = new_document([r.public_key() for r in roots], 2)
    doc = certify(doc, KEY.public_key(), now, 365)
    doc = certify(doc, Ed25519PrivateKey.generate().public_key(), now, 365)
    keys_doc = doc.sign(roots[:2])
    files = sum(w.size for w in release)  # what the delta copies either way
    return {
        "one_release_files": files,
        "stamp_v1": len(v1_stamp),
        "stamp_v2": len(v2_stamp),
        "snapshot_256_shards": len(snapshot.sign(KEY)),
        "record_one_release_v2": len(v2_raw),
        "record_one_release_v3": len(v3_raw),
        "keys_document_3_roots_2_online": len(keys_doc),
        "head_txt_v1": head_v1(now),
        "head_txt_v2": _txt_bytes(
            head_rrset(
                Stamp(SERIAL, now, "origin", now + 1800, h("s"), h("r"), 3),
                b"\1" * 64,
                key_id(KEY.public_key()),
                60,
            ).values[0]
        ),
    }


def head_v1(now: int) -> int:
    value = txt_value(
        [
            ("txtvers", 1),
            ("serial", SERIAL),
            ("ts", now),
            ("origin", "origin"),
            ("kid", "0" * 16),
            ("sig", "A" * 88),
        ]
    )
    return _txt_bytes(value)


def _txt_bytes(value: str) -> int:
    """Wire bytes of a TXT rdata: each string with its length byte."""
    return sum(len(part) + 1 for part in value.strip('"').split('" "'))


class Relay:
    """A TCP relay on loopback that counts every byte both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.bytes = target, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def take(self) -> int:
        time.sleep(0.2)  # let the pipes drain
        with self.lock:
            taken, self.bytes = self.bytes, 0
        return taken

    def close(self) -> None:
        self.sock.close()


def heartbeat_exchanges() -> dict[str, int]:
    """One mirror's share of one heartbeat, on the wire (HTTP/1.1, no TLS)."""
    now = int(time.time())
    stamp = Stamp(SERIAL, now, "origin", now + 1800, h("s"), h("r"), 3).sign(KEY)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(stamp)))
            self.end_headers()
            self.wfile.write(stamp)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = Relay(server.server_address)
    base = f"http://127.0.0.1:{relay.port}"
    secret = b"s" * 64
    try:
        send_ping(
            f"{base}/ping", secret, {"event": "heartbeat", "serial": SERIAL, "from": "origin"}
        )
        ping_in = relay.take()
        fetch_stamp(base, [KEY.public_key()])
        stamp_get = relay.take()
        send_ping(f"{base}/ping", secret, {"event": "synced", "serial": SERIAL, "from": "mirror1"})
        ping_out = relay.take()
    finally:
        relay.close()
        server.shutdown()
        server.server_close()
    meta = meta_rrset(
        MirrorRecord(
            "mirror0001",
            "mirror0001.example.org",
            "fresh",
            SERIAL,
            now,
            now,
            "https://mirror0001.example.org/",
            443,
        ),
        60,
    )
    update = dns.update.UpdateMessage("mirrors.example.org.")
    update.replace(meta.name + ".mirrors.example.org.", 60, "TXT", *meta.values)
    return {
        "ping_origin_to_agent": ping_in,
        "stamp_get_by_agent": stamp_get,
        "ping_agent_to_monitor": ping_out,
        "stamp_get_by_monitor": stamp_get,  # the same exchange, from the monitor
        "dns_update_meta_txt": len(update.to_wire())
        - len(dns.update.UpdateMessage("mirrors.example.org.").to_wire()),
        "floor_one_stamp": len(stamp),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=int, default=1000)
    parser.add_argument("--heartbeat", type=int, default=300, help="seconds between heartbeats")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    docs = documents()
    wire = heartbeat_exchanges()
    per_mirror = sum(v for k, v in wire.items() if k not in ("floor_one_stamp",))
    http_only = per_mirror - wire["dns_update_meta_txt"]
    fleet = per_mirror * args.mirrors
    result = {
        "documents": docs,
        "per_sync_extra": docs["snapshot_256_shards"]
        + docs["stamp_v2"]
        - docs["stamp_v1"]
        + docs["record_one_release_v3"]
        - docs["record_one_release_v2"],
        "per_sync_before_one_serial": docs["stamp_v1"] + docs["record_one_release_v2"],
        "per_sync_after_one_serial": docs["stamp_v2"]
        + docs["snapshot_256_shards"]
        + docs["record_one_release_v3"],
        "per_sync_with_files_before": docs["stamp_v1"]
        + docs["record_one_release_v2"]
        + docs["one_release_files"],
        "per_sync_with_files_after": docs["stamp_v2"]
        + docs["snapshot_256_shards"]
        + docs["record_one_release_v3"]
        + docs["one_release_files"],
        "per_client_check_before": docs["head_txt_v1"] + docs["stamp_v1"],
        "per_client_check_after": docs["head_txt_v2"] + docs["stamp_v2"],
        "heartbeat_wire_per_mirror": wire,
        "heartbeat_per_mirror_bytes": per_mirror,
        "heartbeat_per_mirror_http_bytes": http_only,
        "heartbeat_fleet_bytes": fleet,
        "heartbeat_fleet_bytes_per_second": round(fleet / args.heartbeat, 1),
        "heartbeat_ratio_to_floor": round(per_mirror / wire["floor_one_stamp"], 2),
        "mirrors": args.mirrors,
        "heartbeat_seconds": args.heartbeat,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, value in docs.items():
        print(f"{name:36} {value:>9,} B")
    for name in (
        "per_sync_before_one_serial",
        "per_sync_after_one_serial",
        "per_sync_with_files_before",
        "per_sync_with_files_after",
        "per_client_check_before",
        "per_client_check_after",
    ):
        print(f"{name:36} {result[name]:>9,} B")
    for name, value in wire.items():
        print(f"heartbeat: {name:25} {value:>9,} B")
    print(
        f"heartbeat: {per_mirror:,} B a mirror ({result['heartbeat_ratio_to_floor']}x one stamp); "
        f"{args.mirrors} mirrors: {fleet / 1e6:.2f} MB every {args.heartbeat}s "
        f"= {result['heartbeat_fleet_bytes_per_second'] / 1e3:.1f} kB/s"
    )


if __name__ == "__main__":
    main()

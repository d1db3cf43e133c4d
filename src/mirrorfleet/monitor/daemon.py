"""The monitor daemon: probe, judge, publish, report, in one loop.

Rounds run every `interval` seconds over the whole fleet, and at once for the
hosts an authenticated notification names (an agent that synced, the origin that
published). One thread owns all state; probes run in a bounded pool. On start it
rebuilds what DNS shows (the published states and the signed head), so a restart
neither flaps a mirror nor forgets that one is down.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mirrorfleet import web
from mirrorfleet.config import DnsConfig, MonitorConfig, load_dns_config
from mirrorfleet.errors import UserError
from mirrorfleet.monitor import status
from mirrorfleet.monitor.health import Health, Policy, head_moved, judge, overdue
from mirrorfleet.monitor.listing import Published, fail_static, read_head, read_published
from mirrorfleet.monitor.metrics import MonitorMetrics
from mirrorfleet.notify.ping import PingVerifier
from mirrorfleet.notify.service import json_reply, make_handler, metrics_route, serve_http
from mirrorfleet.probe.observe import (
    FleetConfig,
    Head,
    MirrorSpec,
    fetch_head,
    load_fleet_config,
    observe_all,
    record,
)
from mirrorfleet.tree.keys import read_secret
from mirrorfleet.tree.signed import BadSignature, verify
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.tree.trust import KeysDocument
from mirrorfleet.zone.providers import Provider, provider_for
from mirrorfleet.zone.records import MirrorRecord, signed_bytes
from mirrorfleet.zone.update import update_zone

log = logging.getLogger("mirrorfleet.monitor")
COALESCE = 0.1  # seconds to gather notifications that arrive together into one round


class Monitor:
    def __init__(
        self,
        config: MonitorConfig,
        fleet: FleetConfig,
        dns: DnsConfig | None = None,
        provider: Provider | None = None,
    ) -> None:
        self.config, self.fleet, self.dns = config, fleet, dns
        self.provider = provider or (provider_for(dns) if dns else None)
        self.policy = Policy(config.down_after, config.up_after, config.lag_grace)
        self.specs = {m.label: m for m in fleet.mirrors}
        self.names = {**{m.target: m.label for m in fleet.mirrors}, **{m: m for m in self.specs}}
        self.health = {label: Health.unknown(self.policy) for label in self.specs}
        self.head: Head | None = None
        self.head_checked: float | None = None
        self.head_error: str | None = None
        self.published: dict[str, Published] = {}
        self.held: set[str] = set()
        self.dns_status: dict[str, Any] = {"published": None, "result": None, "error": None}
        self.history = status.History.load(
            config.status_dir, config.history_step, config.history_samples
        )
        self.metrics = MonitorMetrics()
        self.verifier = PingVerifier(read_secret(config.ping_secret))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._head_pending = False
        self.snapshot: dict[str, Any] = {}

    # -- notifications (any thread) -------------------------------------------------

    def notify(self, payload: dict[str, Any]) -> None:
        """Probe the host a notification names now; the origin's means a new head."""
        sender = str(payload.get("from", ""))
        with self._lock:
            if payload.get("event") in ("publish", "heartbeat"):  # the head moved or renewed
                self._head_pending = True
            elif sender in self.names:
                self._pending.add(self.names[sender])
            else:
                log.warning("notification from unknown host %r: ignored", sender)
                return
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    # -- the loop --------------------------------------------------------------------

    def run(self) -> None:
        self.restore()
        next_full = 0.0
        while not self.stopping.is_set():
            self.wake.wait(max(0.0, min(next_full, self._next_deadline()) - time.monotonic()))
            if self.stopping.is_set():
                break
            time.sleep(COALESCE)
            with self._lock:
                labels, self._pending = self._pending, set()
                refresh, self._head_pending = self._head_pending, False
                self.wake.clear()
            if time.monotonic() >= next_full:
                labels, refresh = set(self.specs), True
                next_full = time.monotonic() + self.config.interval
            labels |= self._overdue_labels()
            try:
                self.round(labels, refresh)
            except Exception:  # a daemon must outlive any one bad round
                log.exception("round failed")

    def _next_deadline(self) -> float:
        """When the next mirror's grace runs out (monotonic), to probe it right then."""
        if self.head is None:
            return float("inf")
        deadlines = [
            h.behind_since + self.policy.lag_grace
            for h in self.health.values()
            if h.state == "fresh" and h.behind_since is not None
        ]
        if not deadlines:
            return float("inf")
        return time.monotonic() + max(0.0, min(deadlines) - time.time())

    def _overdue_labels(self) -> set[str]:
        now = time.time()
        return {
            label
            for label, h in self.health.items()
            if h.state == "fresh"
            and h.behind_since is not None
            and now - h.behind_since >= self.policy.lag_grace
        }

    def round(self, labels: Iterable[str], refresh_head: bool) -> None:
        started = time.monotonic()
        if refresh_head or self.head is None:
            self.refresh_head()
        if self.head is not None:
            specs = [self.specs[label] for label in sorted(set(labels))]
            serial = self.head.stamp.serial
            for seen in observe_all(
                specs,
                self.head,
                self.fleet,
                self.config.spot_checks,
                self.config.max_parallel,
                self.config.max_spot_file,
            ):
                self.health[seen.label] = judge(self.health[seen.label], seen, serial, self.policy)
                self.metrics.probes.labels(seen.verdict).inc()
                if seen.verdict == "bad":
                    self.metrics.bad.labels(seen.label, seen.check or "tree").inc()
                self.metrics.probe_seconds.labels(seen.label).set(seen.seconds)
                if seen.certificate_expires is not None:
                    expiry = self.metrics.certificate_expires.labels(seen.label)
                    expiry.set(seen.certificate_expires)
                if seen.error:
                    log.info("%s: %s: %s", seen.label, seen.verdict, seen.error)
            now = time.time()
            for label, h in self.health.items():
                self.health[label] = overdue(h, serial, now, self.policy)
            self.update_zone()
        self.report()
        self.metrics.cycle_seconds.observe(time.monotonic() - started)

    # -- the head ----------------------------------------------------------------------

    def refresh_head(self) -> None:
        try:
            head = fetch_head(self.fleet, self.head, self.config.spot_checks)
        except UserError as exc:
            self.head_error = str(exc)
            log.warning("%s (keeping the last head)", exc)
            return
        self.head_error, self.head_checked = None, time.time()
        if self.head is None or head.stamp.serial != self.head.stamp.serial:
            log.info("head is serial %d", head.stamp.serial)
            now = time.time()
            for label, h in self.health.items():
                self.health[label] = head_moved(h, head.stamp.serial, now, self.policy)
        self.head = head
        self.metrics.head_serial.set(head.stamp.serial)

    def restore(self) -> None:
        """Start from what DNS shows: published states, and the head if it verifies."""
        if self.provider is None:
            return
        try:
            live = self.provider.read_live()
        except Exception as exc:
            log.warning("cannot read the zone to restore state (%s): starting blank", exc)
            return
        self.published = read_published(live)
        for label, seen in self.published.items():
            if label in self.health:
                self.health[label] = Health(state=seen.state, serial=seen.serial, ts=seen.ts)
        head = read_head(live)
        if head is not None:
            self.head = self._head_from_dns(*head)
        log.info(
            "restored %d mirrors and head %s from DNS",
            len(self.published),
            self.head.stamp.serial if self.head else None,
        )

    def _head_from_dns(self, stamp: Stamp, signature: bytes, kid: str) -> Head | None:
        envelope = {
            "signed": json.loads(signed_bytes(stamp)),
            "key": kid,
            "sig": base64.b64encode(signature).decode(),
        }
        raw = json.dumps(envelope).encode()
        try:
            verify(raw, self.fleet.keys)
        except BadSignature as exc:
            log.warning("the zone's head does not verify (%s): ignored", exc)
            return None
        return Head(stamp, raw)

    # -- DNS ---------------------------------------------------------------------------

    def judged(self) -> list[MirrorRecord]:
        now = int(time.time())
        return [
            record(
                spec,
                h.state,
                Stamp(h.serial, h.ts, "") if h.serial else None,
                int(h.last.at) if h.last else now,
            )
            for spec, h in ((s, self.health[s.label]) for s in self.fleet.mirrors)
        ]

    def update_zone(self) -> None:
        """Write the judged fleet into the zone (a zone update); on failure the zone keeps
        what it had (fail static) and the error is reported in /status."""
        if self.provider is None or self.dns is None or self.head is None:
            return
        try:
            live = self.provider.read_live()
            published = read_published(live)
            records, held = fail_static(self.judged(), published, self.config.min_listed)
            state = {"stamp": self.head.envelope, "mirrors": [asdict(r) for r in records]}
            result = update_zone(
                self.dns, state, apply=True, provider=self.provider, live=live, withdrawals_ok=True
            )
        except Exception as exc:  # the zone keeps what it had: fail static
            self.dns_status = {**self.dns_status, "error": str(exc) or type(exc).__name__}
            self.metrics.publishes.labels("error").inc()
            log.error("zone update failed: %s", exc)
            return
        if held and held != self.held:
            log.warning("fail static: holding %s at their published state", sorted(held))
        self.held = held
        self.published = {r.label: Published(r.state, r.serial, r.ts, r.chk) for r in records}
        self.metrics.held.set(len(held))
        self.metrics.publishes.labels("applied" if result.messages else "unchanged").inc()
        self.metrics.last_publish.set(time.time())
        if result.messages:
            log.info(
                "zone update: %d change(s) in %d message(s)", result.plan.changes, result.messages
            )
        self.dns_status = {
            "published": int(time.time()),
            "result": f"{result.plan.changes} change(s), {result.messages} message(s)",
            "error": None,
        }

    # -- reporting ---------------------------------------------------------------------

    def mirror_status(self, spec: MirrorSpec) -> dict[str, Any]:
        h = self.health[spec.label]
        head = self.head.stamp if self.head else None
        behind = head is not None and h.serial < head.serial
        if h.serial == 0 or head is None:
            lag_serials, lag_seconds = (head.serial if head else 0), None
        else:
            lag_serials = max(0, head.serial - h.serial)
            lag_seconds = max(0, head.ts - h.ts) if behind else 0
        published = self.published.get(spec.label)
        return {
            "label": spec.label,
            "target": spec.target,
            "url": spec.url,
            "region": spec.region,
            "weight": spec.weight,
            "tier": spec.tier,
            "upstream": spec.upstream,
            "state": h.state,
            "published": "held"
            if spec.label in self.held
            else (published.state if published else None),
            "serial": h.serial,
            "lag_serials": lag_serials,
            "lag_seconds": lag_seconds,
            "last_sync": int(h.synced_at) if h.synced_at else None,
            "last_probe": int(h.last.at) if h.last else None,
            "probe_seconds": round(h.last.seconds, 4) if h.last else None,
            "error": h.last.error if h.last else None,
        }

    def report(self) -> None:
        now = time.time()
        mirrors = [self.mirror_status(spec) for spec in self.fleet.mirrors]
        head = self.head.stamp if self.head else None
        keys = self.fleet.keys.doc
        snapshot = {
            "generated": int(now),
            "zone": self.dns.zone if self.dns else None,
            "interval": self.config.interval,
            "head": {
                "serial": head.serial if head else None,
                "ts": head.ts if head else None,
                "expires": head.expires if head else None,
                "origin": head.origin if head else None,
                "checked": int(self.head_checked) if self.head_checked else None,
                "error": self.head_error,
            },
            "keys": {
                "version": keys.version if keys else None,
                "expires": keys.expires if keys else None,
                "warning": keys_warning(keys, now),
            },
            "dns": self.dns_status,
            "mirrors": mirrors,
        }
        if head is not None:
            self.metrics.head_expires.set(head.expires)
        if keys is not None:
            self.metrics.keys_expires.set(keys.expires)
        for m in mirrors:
            self.metrics.state.labels(m["label"]).state(m["state"])
            self.metrics.serial.labels(m["label"]).set(m["serial"])
            self.metrics.lag_serials.labels(m["label"]).set(m["lag_serials"])
            self.metrics.lag_seconds.labels(m["label"]).set(m["lag_seconds"] or 0)
        added = head is not None and self.history.add(now, head.serial, mirrors)
        try:
            status.write(self.config.status_dir, snapshot, self.history if added else None)
        except OSError as exc:
            log.error("cannot write status to %s: %s", self.config.status_dir, exc)
        self.snapshot = snapshot


def load(config: MonitorConfig) -> Monitor:
    """A monitor from its config files, every file checked before anything runs."""
    fleet = load_fleet_config(config.fleet)
    dns = load_dns_config(config.dns) if config.dns != Path() else None
    web.use_ca_file(config.ca_file if config.ca_file != Path() else None)
    return Monitor(config, fleet, dns)


def serve(monitor: Monitor) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the listener and the loop; the caller stops them."""
    handler = make_handler(
        "mirrorfleet-monitor",
        monitor.verifier,
        monitor.notify,
        monitor.metrics.pings,
        {
            "/metrics": metrics_route(monitor.metrics.registry),
            "/status.json": lambda: json_reply(monitor.snapshot),
            "/healthz": lambda: json_reply({"ok": True}),
        },
        log,
    )
    server = serve_http(monitor.config.listen_address, handler)
    loop = threading.Thread(target=monitor.run, name="monitor-loop", daemon=True)
    loop.start()
    return server, loop


KEYS_WARN_DAYS = 14  # a keys document this close to its end needs `mirrorfleet keys certify`


def keys_warning(doc: KeysDocument | None, now: float) -> str | None:
    """What the status page says while the roots' keys document nears its end: once
    it expires, every verifier refuses everything the origin signs."""
    if doc is None or doc.expires - now > KEYS_WARN_DAYS * 86400:
        return None
    left = (doc.expires - now) / 86400
    if left <= 0:
        return f"keys document version {doc.version} has expired: run `mirrorfleet keys certify`"
    return (
        f"keys document version {doc.version} expires in {left:.1f} days: "
        "run `mirrorfleet keys certify` and deploy"
    )

"""The monitor's Prometheus metrics: per mirror state, lag and probe time; per cycle
and per publish counts. Scrape GET /metrics on the monitor's listen port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from mirrorfleet.zone.records import STATES


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.state = Enum(
            "mirrorfleet_monitor_mirror_state",
            "Each mirror's state as the monitor judges it",
            ["mirror"],
            states=list(STATES),
            registry=r,
        )
        self.serial = Gauge(
            "mirrorfleet_monitor_mirror_serial",
            "Verified serial a mirror serves",
            ["mirror"],
            registry=r,
        )
        self.lag_serials = Gauge(
            "mirrorfleet_monitor_mirror_lag_serials",
            "Serials behind the origin's head",
            ["mirror"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "mirrorfleet_monitor_mirror_lag_seconds",
            "How much older the mirror's stamp is than the head (origin clock)",
            ["mirror"],
            registry=r,
        )
        self.probe_seconds = Gauge(
            "mirrorfleet_monitor_mirror_probe_duration_seconds",
            "Wall time of the last probe",
            ["mirror"],
            registry=r,
        )
        self.probes = Counter(
            "mirrorfleet_monitor_probes", "Probes by verdict", ["verdict"], registry=r
        )
        self.bad = Counter(
            "mirrorfleet_monitor_bad_answers",
            "Bad answers by mirror and by what failed: certificate, stamp, tree (shards, "
            "pages, files), clients (what pip and uv get), metadata (advertised .metadata "
            "files)",
            ["mirror", "check"],
            registry=r,
        )
        self.certificate_expires = Gauge(
            "mirrorfleet_monitor_mirror_certificate_expiry_timestamp_seconds",
            "When the certificate a mirror serves over HTTPS ends (unix time)",
            ["mirror"],
            registry=r,
        )
        self.head_serial = Gauge(
            "mirrorfleet_monitor_head_serial", "The origin's current serial", registry=r
        )
        self.head_expires = Gauge(
            "mirrorfleet_monitor_head_expiry_timestamp_seconds",
            "When the origin's current stamp expires (unix time): the heartbeat moves it",
            registry=r,
        )
        self.keys_expires = Gauge(
            "mirrorfleet_monitor_keys_expiry_timestamp_seconds",
            "When the roots' keys document expires (unix time); absent without one",
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "mirrorfleet_monitor_cycle_duration_seconds",
            "Probe-judge-publish rounds",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.publishes = Counter(
            "mirrorfleet_monitor_publishes",
            "DNS publish attempts by result",
            ["result"],
            registry=r,
        )
        self.last_publish = Gauge(
            "mirrorfleet_monitor_last_publish_timestamp_seconds",
            "When the zone last matched the monitor's view",
            registry=r,
        )
        self.held = Gauge(
            "mirrorfleet_monitor_mirrors_held",
            "Mirrors kept at their published state by fail static",
            registry=r,
        )
        self.pings = Counter(
            "mirrorfleet_monitor_pings",
            "Notifications received by verdict",
            ["verdict"],
            registry=r,
        )

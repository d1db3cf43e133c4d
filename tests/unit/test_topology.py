"""Topology parsing and address allocation: pure, no root needed."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.lab.topology import build_topology, load_topology

BASE = {"subnet": "10.231.0.0/24", "groups": {"origin": ["origin"], "mirrors": ["m1", "m2"]}}


def test_default_topology_has_every_role() -> None:
    topo = load_topology()
    assert [h.name for h in topo.hosts] == [
        "origin",
        "dns1",
        "dns2",
        "monitor",
        "mirror1",
        "mirror2",
        "mirror3",
        "acme",
    ]
    assert topo.groups == {
        "origin": ["origin"],
        "dns": ["dns1", "dns2"],
        "monitor": ["monitor"],
        "mirrors": ["mirror1", "mirror2", "mirror3"],
        "acme": ["acme"],
    }
    assert topo.host("dns1").data == {"dns_role": "primary"}
    assert topo.host("dns2").data == {"dns_role": "secondary"}


def test_addresses_follow_listing_order_from_dot_ten() -> None:
    topo = build_topology(BASE)
    assert [str(h.address) for h in topo.hosts] == ["10.231.0.10", "10.231.0.11", "10.231.0.12"]
    assert str(topo.gateway) == "10.231.0.1"


@pytest.mark.parametrize("mirrors", [1, 3, 12])
def test_scaling_mirrors_keeps_other_hosts_in_place(mirrors: int) -> None:
    default = load_topology()
    scaled = load_topology(mirrors=mirrors)
    assert scaled.groups["mirrors"] == [f"mirror{i}" for i in range(1, mirrors + 1)]
    for name in ("origin", "dns1", "dns2", "monitor"):
        assert scaled.host(name).address == default.host(name).address
    assert len({h.address for h in scaled.hosts}) == len(scaled.hosts)


def test_subnet_override_moves_every_host() -> None:
    topo = load_topology(subnet="10.99.7.0/24")
    net = ipaddress.IPv4Network("10.99.7.0/24")
    assert all(h.address in net for h in topo.hosts)


def test_host_in_two_groups_gets_one_address() -> None:
    topo = build_topology({"groups": {"origin": ["a"], "mirrors": ["a", "b"]}})
    assert topo.host("a").groups == ("origin", "mirrors")
    assert len(topo.hosts) == 2


@pytest.mark.parametrize(
    ("raw", "kwargs", "message"),
    [
        (BASE, {"subnet": "10.231.0.0/33"}, "bad subnet"),
        (BASE, {"subnet": "10.231.0.5/24"}, "bad subnet"),
        (BASE, {"subnet": "8.8.8.0/24"}, "not a private range"),
        (BASE, {"subnet": "10.231.0.0/29"}, "holds 0 lab hosts"),
        (BASE, {"mirrors": 0}, "at least 1"),
        ({"groups": {}}, {}, "needs a [groups] table"),
        ({"groups": {"origin": "origin"}}, {}, "must be a list"),
        ({"groups": {"origin": ["Origin"]}}, {}, "bad host name"),
        ({"groups": {"origin": ["a_b"]}}, {}, "bad host name"),
        ({"groups": {"origin": ["-a"]}}, {}, "bad host name"),
        ({"groups": {"Bad-Group": ["a"]}}, {}, "bad group name"),
        ({"groups": {"origin": ["a", "a"]}}, {}, "listed twice"),
        ({"groups": {"origin": ["a"]}, "hosts": {"b": {}}}, {}, "in no group"),
        ({"groups": {"origin": ["a"]}, "subnets": "x"}, {}, "unknown topology keys"),
    ],
)
def test_bad_topology_is_one_clear_error(raw: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message.replace("[", r"\[")):
        build_topology(raw, **kwargs)


def test_unknown_host_lists_the_known_ones() -> None:
    with pytest.raises(MirrorfleetError, match="origin, m1, m2"):
        build_topology(BASE).host("nope")


def test_topology_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MirrorfleetError, match="does not exist"):
        load_topology(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("groups = [")
    with pytest.raises(MirrorfleetError, match="not valid TOML"):
        load_topology(bad)

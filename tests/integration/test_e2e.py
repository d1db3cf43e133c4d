"""The whole story on real hosts, as an operator and a user live it, in one scenario:

lab up -> deploy -> content published -> a client picks a mirror (DNSSEC on) -> pip
installs from it -> an origin update reaches every mirror and DNS -> a stopped
mirror is demoted -> a deploy rerun changes nothing -> `mirrorfleet verify` passes
-> lab down leaves nothing. A failure names its step; the lab is torn down anyway.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import dns.resolver
import pytest
from labkit import changed_operations, listed, step, syncs_held

from mirrorfleet.lab.inventory import public_name

pytestmark = pytest.mark.lab

LAB, SUBNET = "ee", "10.234.0.0/24"
ZONE = "mirrors.lab.test."
MIRRORS = ("mirror1", "mirror2", "mirror3")
AS_SERVICE = ("runuser", "-u", "mirrorfleet", "--", "mirrorfleet")
SETTLE = 30.0  # sync + notification + DNS, with room for a loaded machine
DEMOTE = 70.0  # lag_grace (10 s) within a 30 s interval, twice over


def answer(lab, name: str, rdtype: str, server: str = "dns2") -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.lifetime = [lab.address(server)], 5
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def meta_serial(lab, mirror: str) -> int | None:
    text = " ".join(answer(lab, f"{mirror}._meta._pkgmirror.{ZONE}", "TXT"))
    found = re.search(r'"serial=(\d+)"', text)
    return int(found.group(1)) if found else None


def served_serial(lab, mirror: str) -> int | None:
    url = f"http://{lab.address(mirror)}/.mirror/stamp.json"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(json.loads(response.read())["signed"]["serial"])
    except OSError:
        return None


def srv(lab) -> dict[str, int]:
    return listed(lab, "dns2")


def publish(lab, *argv: str) -> int:
    out = lab.check("origin", *AS_SERVICE, "origin", "publish", "--json", *argv)
    return int(json.loads(out)["serial"])


def test_the_whole_fleet_end_to_end(make_lab, leftovers) -> None:
    lab = make_lab(LAB, SUBNET)
    with step("lab up"):
        lab.up()
    with step("deploy"):
        lab.pyinfra("deploy.py")
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    key = (secrets / "origin-signing.pub").read_text().strip()

    with step("content published and listed in DNS"):
        lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "8")
        serial = publish(lab)
        lab.wait_for(lambda: all(meta_serial(lab, m) == serial for m in MIRRORS), SETTLE)
        assert srv(lab) == dict.fromkeys(MIRRORS, 10)

    with step("a client picks a mirror, validating DNSSEC"):
        anchor = lab.check("dns1", "sh", "-c", "cat /var/lib/bind/keys/K*.key")
        lab.check("monitor", "sh", "-c", "cat > /tmp/anchor.key", input_text=anchor)
        pick = ("mirrorfleet", "pick", "--zone", ZONE, "--key", key, "--dnssec", "/tmp/anchor.key")
        url = lab.check("monitor", *pick, "--server", lab.address("dns2")).strip()
        assert url in {f"http://{public_name(m)}/" for m in MIRRORS}, url

    with step("pip installs from the picked mirror"):
        lab.check("monitor", "python3", "-m", "venv", "/tmp/e2e")
        pip = ("/tmp/e2e/bin/pip", "install", "--isolated", "--no-cache-dir", "-q")
        host = url.split("/")[2]
        lab.check(
            "monitor",
            *pip,
            "--index-url",
            f"{url}simple/",
            "--trusted-host",
            host,
            "demo-00003",
            timeout=300,
        )
        lab.check("monitor", "/tmp/e2e/bin/python", "-c", "import demo_00003")

    with step("an origin update reaches every mirror and DNS"):
        lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--add", "demo-00003==2.0")
        serial = publish(lab)
        took = lab.wait_for(
            lambda: (
                all(served_serial(lab, m) == serial for m in MIRRORS)
                and all(meta_serial(lab, m) == serial for m in MIRRORS)
            ),
            SETTLE,
        )
        print(f"serial {serial} on every mirror and in DNS after {took:.1f}s")

    with step("a stopped mirror is demoted, and fresh again once started"):
        with syncs_held(lab, "mirror3"):
            publish(lab, "--force")
            lab.wait_for(lambda: srv(lab).get("mirror3") == 20, DEMOTE)
            assert srv(lab) == {"mirror1": 10, "mirror2": 10, "mirror3": 20}
        lab.wait_for(lambda: srv(lab) == dict.fromkeys(MIRRORS, 10), SETTLE)

    with step("a deploy rerun changes nothing"):
        assert changed_operations(lab.pyinfra("deploy.py")) == []

    with step("mirrorfleet verify passes"):
        mirrorfleet = str(Path(sys.executable).with_name("mirrorfleet"))
        proc = lab.run(mirrorfleet, "verify", "inventories/lab.py", timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "failed" not in proc.stdout.splitlines()[-1]

    with step("lab down leaves nothing behind"):
        proc = lab.down()
        assert proc.returncode == 0, proc.stderr
        assert not any(leftovers(LAB).values()), leftovers(LAB)

"""The whole story on real hosts, as an operator and a user live it, in one scenario:

lab up (with its ACME CA) -> deploy -> every mirror serves HTTPS with a certificate
the CA issued for its name -> content published -> a client picks a mirror (DNSSEC
on) -> pip and uv install from it over HTTPS, trusting only the lab's roots -> an
origin update reaches every mirror and DNS -> a forced certificate renewal costs no
request -> a mirror with a self-signed certificate is withdrawn, and a deploy repairs
it -> a stopped mirror is demoted -> offline roots certify the online key, a client
pins the roots -> the key is rotated and the old one revoked, with no change on the
client -> a deploy rerun changes nothing -> `mirrorfleet
verify` passes -> lab down leaves nothing. A failure names its step; the lab is torn
down anyway.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import dns.resolver
import pytest
from cryptography import x509
from labkit import (
    changed_operations,
    curl_https,
    https_get,
    lab_roots,
    listed,
    served_certificate,
    step,
    syncs_held,
)

from mirrorfleet.lab.inventory import public_name
from mirrorfleet.lab.state import load_state

pytestmark = pytest.mark.lab

LAB, SUBNET = "ee", "10.234.0.0/24"
ZONE = "mirrors.lab.test."
MIRRORS = ("mirror1", "mirror2", "mirror3")
STAMP = "/.mirror/stamp.json"
KEYS = "/.mirror/keys.json"
AS_SERVICE = ("runuser", "-u", "mirrorfleet", "--", "mirrorfleet")
TOPOLOGY = Path(__file__).with_name("e2e_topology.toml")
SETTLE = 30.0  # sync + notification + DNS, with room for a loaded machine
INTERVAL = 10.0  # monitor_interval in e2e_topology.toml (production: 30 s)
DEMOTE = 4 * INTERVAL  # a round, then lag_grace (5 s): more than twice over
RETURN = 6 * INTERVAL  # a down mirror back: up_after (2) good probes a round apart, thrice over


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
    """By the mirror's name over HTTPS, as clients read it (the name pinned to its
    address: this machine does not resolve through the lab's DNS)."""
    try:
        raw = https_get(public_name(mirror), lab.address(mirror), lab_roots(lab), STAMP)
        return int(json.loads(raw)["signed"]["serial"])
    except (OSError, ValueError, KeyError):
        return None


RENEWAL = 20.0  # seconds a client reads mirror1 while certbot renews
RENEW = ("certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew")
# What an operator's mistake looks like: nginx pointed at a certificate no CA signed.
SELF_SIGNED = (
    "cd /etc/mirrorfleet/tls && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
    "-nodes -days 7 -subj /CN=mirror3.mirrors.lab.test -keyout mistake.key -out mistake.crt "
    "2>/dev/null && ln -sfn mistake.crt fullchain.pem && ln -sfn mistake.key privkey.pem "
    "&& systemctl reload nginx.service"
)


def read_while(lab, mirror: str, seconds: float, counts: dict[str, int]) -> None:
    """A client on the monitor host reading the mirror's stamp by name, over and over,
    trusting the lab's roots alone: how many reads answered 200, how many did not."""
    url = f"https://{public_name(mirror)}{STAMP}"
    loop = (
        f"end=$(($(date +%s) + {int(seconds)})); ok=0; failed=0; "
        'while [ "$(date +%s)" -lt "$end" ]; do '
        f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --cacert /tmp/roots.pem {url}); "
        '[ "$code" = 200 ] && ok=$((ok + 1)) || failed=$((failed + 1)); done; '
        'echo "$ok $failed"'
    )
    ok, failed = lab.check("monitor", "sh", "-c", loop, timeout=seconds + 20).split()
    counts.update(ok=int(ok), failed=int(failed))


def srv_ports(lab) -> list[int]:
    return [int(r.split()[2]) for r in answer(lab, f"_pkgmirror._tcp.{ZONE}", "SRV")]


def srv(lab) -> dict[str, int]:
    return listed(lab, "dns2")


def served_keys(lab, mirror: str) -> int | None:
    """The keys document version a mirror serves (unverified: the agent verified it)."""
    try:
        raw = https_get(public_name(mirror), lab.address(mirror), lab_roots(lab), KEYS)
        return int(json.loads(raw)["signed"]["version"])
    except (OSError, ValueError, KeyError):
        return None


def publish(lab, *argv: str) -> int:
    out = lab.check("origin", *AS_SERVICE, "origin", "publish", "--json", *argv)
    return int(json.loads(out)["serial"])


def test_the_whole_fleet_end_to_end(make_lab, leftovers, clients) -> None:
    lab = make_lab(LAB, SUBNET)
    with step("lab up"):
        lab.up("--topology", str(TOPOLOGY))
    with step("deploy"):
        lab.pyinfra("deploy.py")
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    key = (secrets / "origin-signing.pub").read_text().strip()
    roots = lab_roots(lab)

    with step("every mirror, and the origin (by DNS-01), serves a certificate from the CA"):
        for mirror in (*MIRRORS, "origin"):  # the topology's origin: acme_challenge dns-01
            name, address = public_name(mirror), lab.address(mirror)
            cert = served_certificate(address, name, roots)
            assert "Pebble" in cert.issuer.rfc4514_string(), cert.issuer
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert names.value.get_values_for_type(x509.DNSName) == [name]
            assert curl_https(name, address, roots) == 0
            # the same server asked for another name: curl's "peer certificate" failure
            assert curl_https(f"wrong.{ZONE.rstrip('.')}", address, roots) == 60

    with step("content published and listed in DNS"):
        lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "8")
        serial = publish(lab)
        lab.wait_for(lambda: all(meta_serial(lab, m) == serial for m in MIRRORS), SETTLE)
        assert srv(lab) == dict.fromkeys(MIRRORS, 10)
        assert set(srv_ports(lab)) == {443}

    with step("a client picks a mirror, validating DNSSEC"):
        anchor = lab.check("dns1", "sh", "-c", "cat /var/lib/bind/keys/K*.key")
        lab.check("monitor", "sh", "-c", "cat > /tmp/anchor.key", input_text=anchor)
        lab.check("monitor", "sh", "-c", "cat > /tmp/roots.pem", input_text=roots.read_text())
        pick = ("mirrorfleet", "pick", "--zone", ZONE, "--key", key, "--dnssec", "/tmp/anchor.key")
        url = lab.check("monitor", *pick, "--server", lab.address("dns2")).strip()
        assert url in {f"https://{public_name(m)}/" for m in MIRRORS}, url

    with step("pip and uv install from the picked mirror over HTTPS, trusting the lab alone"):
        where = ("--zone", ZONE, "--key", key, "--server", lab.address("dns2"))
        trust = ("--ca-file", "/tmp/roots.pem")
        env = lab.check("monitor", "mirrorfleet", "pip-config", *where, *trust, "--format", "env")
        uv_toml = lab.check(
            "monitor", "mirrorfleet", "pip-config", *where, *trust, "--format", "uv"
        )
        for config in (env, uv_toml):
            assert "https://" in config and "trusted-host" not in config, config
            assert "insecure" not in config.lower(), config
        lab.check("monitor", "sh", "-c", "cat > /tmp/pip.env", input_text=env)
        lab.check("monitor", "sh", "-c", "cat > /tmp/uv.toml", input_text=uv_toml)
        lab.check("monitor", "python3", "-m", "venv", "/tmp/e2e")
        # a clean environment: only what pip-config printed (index, PIP_CERT) counts
        clean = ("env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp/pip-home", "sh", "-c")
        pip = "/tmp/e2e/bin/pip install --no-cache-dir -q demo-00003"
        lab.check("monitor", *clean, f". /tmp/pip.env && {pip}", timeout=300)
        lab.check("monitor", "/tmp/e2e/bin/python", "-c", "import demo_00003")
        # uv is one static binary: the one tests/pyclients.py installed, copied in
        state = load_state(LAB)
        assert state is not None
        shutil.copy(clients.uv, state.host_dir("monitor") / "root/usr/local/bin/uv")
        lab.check("monitor", "python3", "-m", "venv", "--without-pip", "/tmp/uv-env")
        uv = (
            "SSL_CERT_FILE=/tmp/roots.pem /usr/local/bin/uv pip install --no-cache "
            "--config-file /tmp/uv.toml --python /tmp/uv-env/bin/python demo-00004"
        )
        lab.check("monitor", *clean, uv, timeout=300)
        lab.check("monitor", "/tmp/uv-env/bin/python", "-c", "import demo_00004")

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

    with step("a forced renewal gives nginx a new certificate, and no request fails"):
        name, address = public_name("mirror1"), lab.address("mirror1")
        before = served_certificate(address, name, roots).serial_number
        reads: dict[str, int] = {}
        reader = threading.Thread(target=read_while, args=(lab, "mirror1", RENEWAL, reads))
        reader.start()
        time.sleep(1)
        started = time.monotonic()
        lab.check("mirror1", *RENEW, timeout=60)
        renewed_in = time.monotonic() - started
        reader.join(RENEWAL + 30)
        assert renewed_in < RENEWAL - 2, (
            f"the renewal took {renewed_in:.1f}s: longer than the reads"
        )
        assert served_certificate(address, name, roots).serial_number != before
        assert reads.get("failed") == 0 and reads.get("ok", 0) > 20, reads

    with step("a mirror serving a self-signed certificate is withdrawn; a deploy repairs it"):
        lab.check("mirror3", "sh", "-c", SELF_SIGNED)
        lab.wait_for(lambda: "mirror3" not in srv(lab), DEMOTE)
        states = json.loads(
            lab.check("monitor", "curl", "-sf", "http://localhost:8874/status.json")
        )
        mirror3 = next(m for m in states["mirrors"] if m["label"] == "mirror3")
        assert mirror3["state"] == "down", mirror3
        assert "certificate" in json.dumps(mirror3).lower(), mirror3
        lab.pyinfra("deploy.py")  # puts the links back to certbot's certificate, reloads
        lab.wait_for(lambda: srv(lab) == dict.fromkeys(MIRRORS, 10), RETURN)

    with step("a stopped mirror is demoted, and fresh again once started"):
        with syncs_held(lab, "mirror3"):
            publish(lab, "--force")
            lab.wait_for(lambda: srv(lab).get("mirror3") == 20, DEMOTE)
            assert srv(lab) == {"mirror1": 10, "mirror2": 10, "mirror3": 20}
        lab.wait_for(lambda: srv(lab) == dict.fromkeys(MIRRORS, 10), SETTLE)

    mirrorfleet = str(Path(sys.executable).with_name("mirrorfleet"))
    offline = secrets.with_name("offline-roots")  # the operator's offline folder

    def keys(*argv: str) -> dict:
        proc = lab.run(mirrorfleet, "keys", *argv, "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def pinning_the_roots(*argv: str) -> str:
        """A client that pins the roots alone, the same command line every time."""
        pinned = [part for r in rooted["roots"] for part in ("--key", r["key"])]
        where = ("--zone", ZONE, "--server", lab.address("dns2"), "--root-threshold", "2")
        return lab.check("monitor", "mirrorfleet", *argv, *where, *pinned, "--ca-file",
                         "/tmp/roots.pem").strip()  # fmt: skip

    with step("offline roots certify the online key; every verifier pins the roots"):
        rooted = keys("root", "init", "--dir", str(offline), "--count", "3", "--threshold", "2")
        keys("certify", "--root-dir", str(offline), "--secrets", str(secrets))
        lab.pyinfra("deploy.py")  # agents and the monitor pin the roots; a heartbeat now
        lab.wait_for(lambda: all(served_keys(lab, m) == 1 for m in MIRRORS), SETTLE)
        assert pinning_the_roots("pick") in {f"https://{public_name(m)}/" for m in MIRRORS}

    with step("a rotation: a new online key, deployed; no client changes anything"):
        rotated = keys("rotate", "--root-dir", str(offline), "--secrets", str(secrets))
        lab.pyinfra("deploy.py")
        lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--add", "demo-00005==2.0")
        serial = publish(lab)  # signed by the new key
        lab.wait_for(lambda: all(meta_serial(lab, m) == serial for m in MIRRORS), SETTLE)
        assert json.loads(pinning_the_roots("pick", "--json"))["serial"] == serial
        env = pinning_the_roots("pip-config", "--format", "env")
        lab.check("monitor", "sh", "-c", "cat > /tmp/pip.env", input_text=env)
        pip = "/tmp/e2e/bin/pip install --no-cache-dir -q demo-00005==2.0"
        lab.check("monitor", *clean, f". /tmp/pip.env && {pip}", timeout=300)

    with step("the old key revoked: one heartbeat takes it to every mirror and client"):
        serial = publish(lab, "--full")  # every shard signed again, by the new key
        lab.wait_for(lambda: all(meta_serial(lab, m) == serial for m in MIRRORS), SETTLE)
        revoked = keys("revoke", rotated["old"]["id"], "--root-dir", str(offline),
                       "--secrets", str(secrets))  # fmt: skip
        lab.pyinfra("deploy.py")  # the new document; the deploy runs a heartbeat
        version = revoked["document"]["version"]
        lab.wait_for(lambda: all(served_keys(lab, m) == version for m in MIRRORS), SETTLE)
        lab.wait_for(lambda: srv(lab) == dict.fromkeys(MIRRORS, 10), SETTLE)
        assert pinning_the_roots("pick") in {f"https://{public_name(m)}/" for m in MIRRORS}

    with step("a deploy rerun changes nothing"):
        assert changed_operations(lab.pyinfra("deploy.py")) == []

    with step("mirrorfleet verify passes"):
        proc = lab.run(mirrorfleet, "verify", "inventories/lab.py", timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "failed" not in proc.stdout.splitlines()[-1]

    with step("lab down leaves nothing behind"):
        proc = lab.down()
        assert proc.returncode == 0, proc.stderr
        assert not any(leftovers(LAB).values()), leftovers(LAB)

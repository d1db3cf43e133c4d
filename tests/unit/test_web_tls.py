"""HTTPS reads under one TLS policy (mirrorfleet/web.py, issue 17), against real TLS on
loopback: a stamp read over HTTPS verifies the server's certificate for its name
against the CA the operator names, the environment's bundle or the system's store;
the monitor's probe calls a mirror with a bad certificate bad, with the reason, and
reads when a good one ends."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tlskit import LoopbackHTTPS, TestCA

from mirrorfleet import web
from mirrorfleet.config import dumps
from mirrorfleet.errors import UserError
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.observe import Head, MirrorSpec, observe
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.stamp import StampUnavailable, fetch_stamp, read_local_stamp

CLI = str(Path(sys.executable).with_name("mirrorfleet"))


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the defaults, with none of this machine's bundles."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    web.use_ca_file(None)
    yield
    web.use_ca_file(None)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
def tree(origin_config) -> Path:
    publish(origin_config, ping=False)
    return origin_config.tree


@pytest.fixture
def keys(origin_config) -> list:
    return [load_signing_key(origin_config.signing_key).public_key()]


def test_a_stamp_over_https_verifies_with_the_named_ca(ca: TestCA, tree: Path, keys) -> None:
    web.use_ca_file(ca.root)
    with LoopbackHTTPS(tree, ca.leaf("good")) as server:
        stamp, _raw = fetch_stamp(server.url, keys, timeout=5)
    assert stamp == read_local_stamp(tree, keys)


def test_without_the_ca_the_certificate_is_refused_as_an_answer(
    ca: TestCA, tree: Path, keys
) -> None:
    with LoopbackHTTPS(tree, ca.leaf("good")) as server, pytest.raises(StampUnavailable) as exc:
        fetch_stamp(server.url, keys, timeout=5)
    assert exc.value.certificate and exc.value.answered
    assert "certificate" in str(exc.value) and "unable to get local issuer" in str(exc.value)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("other-name", "Hostname mismatch"),
        ("self-signed", "self-signed certificate"),
        ("expired", "certificate has expired"),
    ],
)
def test_a_bad_certificate_is_refused_with_its_reason(
    ca: TestCA, tree: Path, keys, how: str, reason: str
) -> None:
    leaf = ca.leaf(
        how,
        names=("mirror9.lab.test",) if how == "other-name" else ("localhost",),
        self_signed=how == "self-signed",
        expired=how == "expired",
    )
    web.use_ca_file(ca.root)
    with LoopbackHTTPS(tree, leaf) as server, pytest.raises(StampUnavailable) as exc:
        fetch_stamp(server.url, keys, timeout=5)
    assert exc.value.certificate and reason in str(exc.value), exc.value


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_environments_bundle_is_trusted(
    ca: TestCA, tree: Path, keys, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(ca.root))
    web.use_ca_file(None)  # the context is built again, reading the environment
    with LoopbackHTTPS(tree, ca.leaf("good")) as server:
        assert fetch_stamp(server.url, keys, timeout=5)[0].serial >= 1


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        web.use_ca_file(tmp_path / "nope.pem")


def test_a_ca_file_that_is_not_pem_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    web.use_ca_file(junk)
    with pytest.raises(UserError, match="unusable"):
        web.context()


def test_the_probe_reads_when_a_good_certificate_ends(ca: TestCA, tree: Path, keys) -> None:
    web.use_ca_file(ca.root)
    leaf = ca.leaf("good", days=20)
    with LoopbackHTTPS(tree, leaf) as server:
        head = Head(*fetch_stamp(server.url, keys, timeout=5))
        seen = observe(MirrorSpec("m1", "m1.test.", server.url), head, keys, 5, spot_checks=0)
    assert (seen.verdict, seen.error) == ("ok", None)
    assert seen.certificate_expires == int(leaf.not_after.timestamp())


@pytest.mark.parametrize("how", ["self-signed", "other-name"])
def test_the_probe_calls_a_bad_certificate_bad_with_the_reason(
    ca: TestCA, tree: Path, keys, how: str
) -> None:
    web.use_ca_file(ca.root)
    good = ca.leaf("good")
    bad = ca.leaf(
        how,
        names=("mirror9.lab.test",) if how == "other-name" else ("localhost",),
        self_signed=how == "self-signed",
    )
    with LoopbackHTTPS(tree, good) as origin, LoopbackHTTPS(tree, bad) as mirror:
        head = Head(*fetch_stamp(origin.url, keys, timeout=5))
        seen = observe(MirrorSpec("m1", "m1.test.", mirror.url), head, keys, 5, spot_checks=0)
    assert (seen.verdict, seen.check) == ("bad", "certificate"), seen
    assert "certificate" in (seen.error or "")


def test_the_client_commands_take_ca_file() -> None:
    proc = subprocess.run(
        [CLI, "pick", "--zone", "x.test", "--key", "k", "--ca-file", "/nonexistent.pem"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--ca-file" in proc.stderr, proc.stderr


@pytest.mark.parametrize("trusted", [True, False])
def test_the_agent_syncs_from_an_https_upstream_it_trusts(
    ca: TestCA, agent_config, origin_config, tmp_path: Path, trusted: bool
) -> None:
    """agent.toml's ca_file: the stamp and the records come over HTTPS."""
    with LoopbackHTTPS(origin_config.tree, ca.leaf("good")) as server:
        config = dataclasses.replace(
            agent_config,
            upstream_http=server.url,
            ca_file=ca.root if trusted else Path(),
        )
        toml = tmp_path / "agent.toml"
        toml.write_text(dumps(config))
        proc = subprocess.run(
            [CLI, "agent", "sync", "--json", "--config", str(toml)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin"},  # none of this machine's bundles
        )
    result = json.loads(proc.stdout)
    if trusted:
        assert (proc.returncode, result["status"]) == (0, "synced"), proc.stdout + proc.stderr
    else:
        assert proc.returncode == 1 and "certificate" in result["error"], result

"""roles/tls and the lab's TLS data, alone: the operator's own certificate is checked
on the control node before any host is touched; certbot's names are read from
openssl's output; the lab turns HTTPS on exactly when it has an ACME CA."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlskit import TestCA

from mirrorfleet.errors import UserError
from mirrorfleet.lab.inventory import tls_data
from mirrorfleet.lab.state import HostState, LabState
from mirrorfleet_roles import tls

NAME = "mirror1.mirrors.example.org"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def test_an_own_certificate_for_the_name_passes(ca: TestCA) -> None:
    leaf = ca.leaf("good", (NAME,))
    tls.check_own(leaf.cert, leaf.key, NAME)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("other name", "is for"),
        ("expired", "ended on"),
        ("other key", "is not the key of"),
        ("missing", "unreadable"),
        ("not pem", "unreadable"),
    ],
)
def test_a_bad_own_certificate_is_refused(ca: TestCA, how: str, message: str) -> None:
    leaf = ca.leaf(
        "leaf", ("other.example.org",) if how == "other name" else (NAME,), expired=how == "expired"
    )
    key = ca.leaf("second", (NAME,)).key if how == "other key" else leaf.key
    cert = leaf.cert
    if how == "missing":
        cert = leaf.cert.with_name("absent.crt")
    if how == "not pem":
        cert.write_text("not a certificate")
    with pytest.raises(UserError, match=message):
        tls.check_own(cert, key, NAME)


def test_certbot_names_come_from_openssls_san_line() -> None:
    fact = tls.CertificateNames()
    lines = [
        "X509v3 Subject Alternative Name: ",
        f"    DNS:{NAME}, DNS:a.example, IP Address:192.0.2.1",
    ]
    assert fact.process(lines) == sorted([NAME, "a.example"])
    assert fact.process([]) == [] and tls.CertificateNames.default() == []


def lab(groups: list[list[str]]) -> LabState:
    hosts = [
        HostState(name=f"h{i}", groups=g, address=f"10.9.0.{10 + i}", data={}, netns="", veth="")
        for i, g in enumerate(groups)
    ]
    return LabState(
        name="t", subnet="10.9.0.0/24", gateway="10.9.0.1", bridge="b", template="/t", hosts=hosts
    )


def test_a_lab_with_an_acme_ca_serves_https_trusting_its_roots() -> None:
    state = lab([["origin"], ["acme"], ["mirrors"]])
    data = tls_data(state)
    assert data["tls"] == "acme"
    assert data["acme_directory"] == "https://h1.mirrors.lab.test:14000/dir"
    assert data["tls_trust"] == str(state.dir / "acme-roots.pem")


def test_a_lab_without_one_keeps_plain_http() -> None:
    assert tls_data(lab([["origin"], ["mirrors"]])) == {"tls": "off"}

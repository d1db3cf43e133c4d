"""The serve_tree site with HTTPS on (roles/tls, roles/nginx/templates/tls.conf.j2),
rendered as the deploy renders it and run by the real nginx on loopback: port 80
answers ACME challenges and sends everything else to HTTPS; HTTPS serves the tree,
negotiated, with the certificate verified for its name."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

import pytest
from nginxkit import LoopbackNginx
from tlskit import TestCA

from mirrorfleet.content import pypi

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nginx-tls")
    pypi.generate(root / "tree", 2, versions=1)
    token = root / "acme/.well-known/acme-challenge/token-1"
    token.parent.mkdir(parents=True)
    token.write_text("token-1.thumbprint")
    ca = TestCA(root / "ca")
    with LoopbackNginx(root / "tree", root / "work", tls=ca.leaf("site")) as server:
        yield server, ca.root


def plain(server: LoopbackNginx, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path, headers={"Host": "mirror.example"})
    return conn.getresponse()


def secure(server: LoopbackNginx, root: Path, path: str, **headers: str):
    context = ssl.create_default_context(cafile=str(root))
    conn = http.client.HTTPSConnection("localhost", server.tls_port, context=context, timeout=5)
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


@pytest.mark.parametrize("path", ["/simple/", "/.mirror/stamp.json", "/packages/x"])
def test_plain_http_sends_clients_to_https(site, path: str) -> None:
    server, _root = site
    response = plain(server, path)
    assert response.status == 301
    assert response.getheader("Location") == f"https://mirror.example{path}"


def test_plain_http_answers_the_acme_challenge(site) -> None:
    server, _root = site
    response = plain(server, "/.well-known/acme-challenge/token-1")
    assert (response.status, response.read()) == (200, b"token-1.thumbprint")


def test_https_serves_the_negotiated_tree(site) -> None:
    server, root = site
    response = secure(server, root, "/simple/", Accept=PIP_ACCEPT)
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("application/vnd.pypi.simple.v1+json")
    page = secure(server, root, "/simple/demo-00001/", Accept="text/html")
    assert (page.status, page.getheader("Content-Type")) == (200, "text/html")


def test_https_does_not_serve_the_challenge_folder(site) -> None:
    server, root = site
    assert secure(server, root, "/.well-known/acme-challenge/token-1").status == 404


def test_a_client_without_the_ca_refuses_the_site(site) -> None:
    server, _root = site
    other = TestCA(Path(server.work) / "other", "another root")
    context = ssl.create_default_context(cafile=str(other.root))
    conn = http.client.HTTPSConnection("localhost", server.tls_port, context=context, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/simple/")

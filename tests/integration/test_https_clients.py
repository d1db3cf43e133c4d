"""Real pip and uv install over HTTPS with what `pip-config --ca-file` prints, trusting
only the CA that signed the mirror's certificate (issue 17): no `trusted-host`, no
insecure host. Without that CA they refuse the mirror.

No lab: the demo tree is served over TLS on loopback by tests/tlskit.py, with a leaf
for `localhost` from a CA made by `cryptography`. The lab's own CA and nginx come
with the ACME work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyclients
import pytest
from tlskit import LoopbackHTTPS, TestCA

from mirrorfleet.cli.client import client_config
from mirrorfleet.content import pypi

PROJECT, VERSION = "demo-00001", "1.0.0"
CLIENTS = ("debian-pip", "latest-pip", "uv-pip", "uv-project")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("https")
    pypi.generate(root / "tree", 2, versions=1)
    ca = TestCA(root / "ca")
    with LoopbackHTTPS(root / "tree", ca.leaf("mirror")) as server:
        yield f"{server.url}simple/", ca.root


def install(clients: pyclients.Clients, client: str, config: str) -> pyclients.Run:
    wanted = (PROJECT,)
    if client == "debian-pip":
        return clients.debian_pip(config, requirements=wanted)
    if client == "latest-pip":
        return clients.latest_pip(pyclients.parse_exports(config), requirements=wanted)
    if client == "uv-pip":
        return clients.uv_pip(config, requirements=wanted)
    return clients.uv_project(pyclients.parse_exports(config), requirements=wanted)


def fmt_of(client: str) -> str:
    return {"debian-pip": "pip.conf", "uv-pip": "uv"}.get(client, "env")


@pytest.mark.parametrize("client", CLIENTS)
def test_installs_over_https_trusting_only_the_named_ca(
    clients: pyclients.Clients, mirror: tuple[str, Path], client: str
) -> None:
    index, ca = mirror
    config = client_config(index, fmt_of(client), ca_file=str(ca))
    assert "trusted-host" not in config.lower() and "insecure" not in config.lower(), config
    run = install(clients, client, config)
    assert run.installed.get(PROJECT) == VERSION, run.installed


@pytest.mark.parametrize("client", CLIENTS)
def test_without_the_ca_the_mirror_is_refused(
    clients: pyclients.Clients, mirror: tuple[str, Path], client: str
) -> None:
    index, _ca = mirror
    with pytest.raises(pyclients.ClientFailed) as failed:
        install(clients, client, client_config(index, fmt_of(client)))
    text = str(failed.value).lower()
    assert "certificate" in text or "ssl" in text, failed.value

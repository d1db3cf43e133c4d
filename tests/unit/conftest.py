"""Shared fixtures: a secrets folder, a tiny PEP 503 tree for publish/sync tests, and
an agent syncing it from a loopback upstream (real rsync daemon and HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.origin.publish import publish
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.keys import SecretsDir, init_secrets


def _add_project(tree: Path, name: str, version: str) -> None:
    """A release the way the real generator orders it: file first, then its page."""
    files = tree / "packages" / name
    files.mkdir(parents=True, exist_ok=True)
    (files / f"{name}-{version}.tar.gz").write_bytes(f"{name} {version}".encode() * 100)
    page = tree / "simple" / name / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    links = "".join(
        f'<a href="../../packages/{name}/{f.name}">{f.name}</a>\n' for f in sorted(files.iterdir())
    )
    page.write_text(f"<!DOCTYPE html><html><body>{links}</body></html>\n")


@pytest.fixture
def add_project() -> Callable[[Path, str, str], None]:
    return _add_project


@pytest.fixture
def secrets_dir(tmp_path: Path) -> SecretsDir:
    init_secrets(tmp_path / "secrets")
    return SecretsDir(tmp_path / "secrets")


@pytest.fixture
def origin_config(tmp_path: Path, secrets_dir: SecretsDir) -> OriginConfig:
    tree = tmp_path / "origin"
    for i in range(5):
        _add_project(tree, f"proj{i}", "1.0")
    return OriginConfig(
        name="origin",
        tree=tree,
        signing_key=secrets_dir.signing_key,
        ping_secret=secrets_dir.ping_secret,
        state_dir=tmp_path / "origin-state",
    )


@pytest.fixture
def upstream(tmp_path: Path, origin_config: OriginConfig) -> Iterator[LoopbackUpstream]:
    with LoopbackUpstream(origin_config.tree, tmp_path) as served:
        yield served


@pytest.fixture
def agent_config(
    tmp_path: Path, origin_config: OriginConfig, secrets_dir: SecretsDir, upstream
) -> AgentConfig:
    publish(origin_config, ping=False)
    return AgentConfig(
        name="mirror1",
        tree=tmp_path / "mirror",
        upstream_rsync=upstream.rsync_url,
        upstream_http=upstream.http_url,
        public_keys=(secrets_dir.public_key.read_text().strip(),),
        ping_secret=secrets_dir.ping_secret,
        state_dir=tmp_path / "state",
        retries=0,
    )

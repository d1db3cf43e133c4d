"""What a page says about a release is what real clients do with it (issue 16): a
yanked release (PEP 592) and one whose requires-python shuts out this Python, served
by a mirror's own nginx site (tests/nginxkit.py) to Debian's pip, the latest pip and
`uv pip`, from the JSON pages and from HTML alone (the form a plain PEP 503 tree
has, where nginx falls back).

demo-00000 holds 1.0.0 (a wheel and an sdist), 1.1.0 (yanked) and 1.2.0 (requires
Python >= 4). Unpinned, every client must take 1.0.0; pinned to the yanked 1.1.0,
PEP 592 lets it install; pinned to 1.2.0, it must refuse, naming Python.

No lab: nginx runs on loopback. The clients come from the wheel cache, offline.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyclients
import pytest
from nginxkit import LoopbackNginx

from mirrorfleet.cli.client import client_config
from mirrorfleet.content import pypi

PROJECT = "demo-00000"
FUTURE = "1.2.0"  # requires-python >= 4
FORMS = ("json", "html-only")
CLIENTS = ("debian-pip", "latest-pip", "uv-pip")


@pytest.fixture(scope="module", params=FORMS)
def index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    root = tmp_path_factory.mktemp(f"tree-{request.param}")
    tree = root / "tree"
    pypi.generate(tree, 2, versions=1)
    pypi.add_release(tree, PROJECT, FUTURE, requires_python=">=4")
    if request.param == "html-only":
        for page in tree.rglob(pypi.JSON_PAGE):
            page.unlink()
    page = (tree / "simple" / PROJECT / pypi.PAGE).read_text()
    assert 'data-yanked="' in page and 'data-requires-python="&gt;=4"' in page
    with LoopbackNginx(tree, root / "nginx") as nginx:
        yield f"{nginx.url}/simple/"


def install(clients: pyclients.Clients, client: str, index: str, requirement: str) -> pyclients.Run:
    wanted = (requirement,)
    if client == "debian-pip":
        return clients.debian_pip(client_config(index, "pip.conf"), requirements=wanted)
    if client == "latest-pip":
        exports = pyclients.parse_exports(client_config(index, "env"))
        return clients.latest_pip(exports, requirements=wanted)
    return clients.uv_pip(client_config(index, "uv"), requirements=wanted)


@pytest.mark.parametrize("client", CLIENTS)
def test_unpinned_skips_the_yanked_and_the_future_release(
    clients: pyclients.Clients, index: str, client: str
) -> None:
    run = install(clients, client, index, PROJECT)
    assert run.installed.get(PROJECT) == "1.0.0", run.installed


@pytest.mark.parametrize("client", CLIENTS)
def test_pinned_to_the_yanked_release_installs_it(
    clients: pyclients.Clients, index: str, client: str
) -> None:
    run = install(clients, client, index, f"{PROJECT}=={pypi.YANKED_VERSION}")
    assert run.installed.get(PROJECT) == pypi.YANKED_VERSION, run.installed
    if client != "uv-pip":  # pip says so; uv installs it quietly
        assert "yanked" in run.log.lower(), run.log


@pytest.mark.parametrize("client", CLIENTS)
def test_pinned_to_a_release_for_another_python_is_refused(
    clients: pyclients.Clients, index: str, client: str
) -> None:
    with pytest.raises(pyclients.ClientFailed) as failed:
        install(clients, client, index, f"{PROJECT}=={FUTURE}")
    assert "python" in str(failed.value).lower(), failed.value

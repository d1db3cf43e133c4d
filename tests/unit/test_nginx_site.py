"""The mirror's nginx site, as deployed, on the real nginx and its njs module: what
each client's Accept header gets from /simple/ (PEP 691), with the right type.

The cases are choose_page's own (tests/negotiation_cases.py): for each, a project
folder holding exactly the case's page files, and nginx must answer what
choose_page answers (None: 406, or 404 where the folder holds no page at all).
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from negotiation_cases import CASES, PIP
from nginxkit import LoopbackNginx

from mirrorfleet.content import pypi
from mirrorfleet.content.negotiate import TEXT_HTML, V1_JSON, choose_page

PAGES = ("index.html", "index.v1_html", "index.v1_json", "x")


def folder(available: set[str]) -> str:
    """The project whose folder holds exactly these page files."""
    return "p-" + "-".join(
        sorted(name.replace("index.", "").replace("_", "") for name in available)
    )


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nginx")
    tree = root / "tree"
    pypi.generate(tree, 1)
    for available in {frozenset(case.values[1]) for case in CASES}:
        project = tree / "simple" / folder(set(available))
        project.mkdir()
        for name in available:
            (project / name).write_text(f"{name} of {project.name}")
    with LoopbackNginx(tree, root / "work") as server:
        yield server


def get(nginx: LoopbackNginx, path: str, accept: str | None) -> tuple[int, str, bytes]:
    """(status, Content-Type without parameters, body)."""
    request = urllib.request.Request(f"{nginx.url}{path}")
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


@pytest.mark.parametrize(("accept", "available", "expected"), CASES)
def test_nginx_answers_what_choose_page_answers(
    nginx, accept: str | None, available: set[str], expected: tuple[str, str] | None
) -> None:
    assert choose_page(accept, available) == expected  # the table is choose_page's
    project = folder(available)
    status, ctype, body = get(nginx, f"/simple/{project}/", accept)
    if expected is None:
        no_page = not available & {"index.html", "index.v1_html", "index.v1_json"}
        assert status == (404 if no_page else 406), (status, ctype, nginx.errors())
        return
    page, content_type = expected
    assert (status, ctype) == (200, content_type), nginx.errors()
    assert body == (nginx.tree / "simple" / project / page).read_bytes()


@pytest.mark.parametrize(("accept", "form"), [(PIP, V1_JSON), (None, TEXT_HTML)])
def test_the_root_page_is_negotiated_too(nginx, accept: str | None, form: str) -> None:
    status, ctype, body = get(nginx, "/simple/", accept)
    page = "index.v1_json" if form == V1_JSON else "index.html"
    assert (status, ctype) == (200, form)
    assert body == (nginx.tree / "simple" / page).read_bytes()


@pytest.mark.parametrize(
    "path", ["/simple/no-such-project/", "/simple/Not_Normal/", "/simple/a%3Fb/"]
)
def test_a_folder_that_is_no_project_is_404_whatever_is_asked(nginx, path: str) -> None:
    assert get(nginx, path, PIP)[0] == 404
    assert get(nginx, path, "image/png")[0] == 404


def test_the_internal_paths_are_not_reachable_from_outside(nginx) -> None:
    assert get(nginx, "/.pep691/json/simple/index.v1_json", PIP)[0] == 404


def test_a_page_asked_for_by_its_file_name_keeps_its_type(nginx) -> None:
    status, ctype, _body = get(nginx, "/simple/demo-00000/index.v1_json", "text/html")
    assert (status, ctype) == (200, V1_JSON)


def test_every_answer_says_it_varies_by_accept(nginx) -> None:
    request = urllib.request.Request(f"{nginx.url}/simple/demo-00000/", headers={"Accept": PIP})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Vary"] == "Accept"


def test_files_and_their_metadata_are_served_with_ranges(nginx) -> None:
    """uv reads a wheel's METADATA by HTTP range requests where no .metadata is
    advertised; pip and uv fetch the .metadata files a page advertises."""
    wheel = next((nginx.tree / "packages").glob("*/*.whl"))
    path = f"/{wheel.relative_to(nginx.tree).as_posix()}"
    request = urllib.request.Request(f"{nginx.url}{path}", headers={"Range": "bytes=-22"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 206
        assert response.read() == wheel.read_bytes()[-22:]  # a zip's end record
    status, _ctype, body = get(nginx, f"{path}.metadata", None)
    assert status == 200 and body == wheel.with_name(f"{wheel.name}.metadata").read_bytes()

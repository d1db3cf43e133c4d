"""The mirror's nginx site, as deployed, on the real nginx and its njs module: what
each client's Accept header gets from /simple/ (PEP 691), with the right type."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from nginxkit import LoopbackNginx

from mirrorfleet.content import pypi

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
HTML = "text/html"
PIP = f"{JSON}, {V1_HTML}; q=0.1, text/html; q=0.01"
UV = f"{JSON}, {V1_HTML};q=0.2, text/html;q=0.01"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# (Accept, the form served). Ties go to the server's order: JSON, PEP 691's HTML,
# text/html; nothing acceptable (or no header) gets text/html, as Warehouse does.
CASES = [
    (PIP, JSON),
    (UV, JSON),
    (None, HTML),
    ("", HTML),
    ("text/html", HTML),
    (BROWSER, HTML),
    ("*/*", JSON),
    ("application/*", JSON),
    (V1_HTML, V1_HTML),
    (f"{V1_HTML}, {JSON};q=0.5", V1_HTML),
    (f"{JSON};q=0, text/html", HTML),
    (f"{JSON};q=0.3, {V1_HTML};q=0.4", V1_HTML),
    (f"{JSON};q=0.5, */*;q=0.9", V1_HTML),  # the specific range decides JSON's q
    (f"{JSON.upper()}", JSON),  # media types are case-insensitive
    (f"{JSON};q=2, text/html;q=0.1", HTML),  # a q out of range counts as 0
    (f"{JSON};q=abc", HTML),
    ("image/png", HTML),  # nothing acceptable: HTML, not 406
    ("application/vnd.pypi.simple.latest+json", HTML),  # not an offer (yet)
]


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nginx")
    tree = root / "tree"
    pypi.generate(tree, 2)
    pep503 = tree / "simple/plain"  # an imported PEP 503 tree: no JSON page
    pep503.mkdir()
    (pep503 / "index.html").write_text("<a href='x'>x</a>")
    v1_html = tree / "simple/demo-00001/index.v1_html"  # bandersnatch writes one
    v1_html.write_bytes((tree / "simple/demo-00001/index.html").read_bytes())
    with LoopbackNginx(tree, root / "work") as server:
        yield server


def get(nginx: LoopbackNginx, path: str, accept: str | None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"{nginx.url}{path}")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers.get_content_type(), response.read()


def served_as(tree: Path, page: str, body: bytes) -> bool:
    return (tree / page).read_bytes() == body


@pytest.mark.parametrize(("accept", "form"), CASES)
def test_simple_pages_are_negotiated_per_pep_691(nginx, accept: str | None, form: str) -> None:
    status, ctype, body = get(nginx, "/simple/demo-00001/", accept)
    page = {JSON: "index.v1_json", V1_HTML: "index.v1_html", HTML: "index.html"}[form]
    assert (status, ctype) == (200, form), nginx.errors()
    assert served_as(nginx.tree, f"simple/demo-00001/{page}", body)


@pytest.mark.parametrize(("accept", "form"), [(PIP, JSON), (None, HTML), (BROWSER, HTML)])
def test_the_root_page_is_negotiated_too(nginx, accept: str | None, form: str) -> None:
    status, ctype, body = get(nginx, "/simple/", accept)
    page = "index.v1_json" if form == JSON else "index.html"
    assert (status, ctype) == (200, form) and served_as(nginx.tree, f"simple/{page}", body)


@pytest.mark.parametrize("accept", [PIP, UV, V1_HTML])
def test_a_project_without_the_chosen_page_gets_its_html_page(nginx, accept: str) -> None:
    """A tree imported from a PEP 503 index has index.html alone: pip's and uv's JSON
    request must still get a page they read (it was a 403 before), not an error."""
    status, ctype, body = get(nginx, "/simple/plain/", accept)
    assert (status, ctype) == (200, HTML) and served_as(nginx.tree, "simple/plain/index.html", body)
    # and a page of PEP 691's HTML form falls back the same way where it is missing
    status, ctype, _body = get(nginx, "/simple/demo-00000/", V1_HTML)
    assert (status, ctype) == (200, HTML)


@pytest.mark.parametrize("query", [JSON, quote(JSON, safe="/")])
def test_format_in_the_query_overrides_accept(nginx, query: str) -> None:
    status, ctype, _body = get(nginx, f"/simple/demo-00001/?format={query}", "text/html")
    assert (status, ctype) == (200, JSON)


def test_every_answer_says_it_varies_by_accept(nginx) -> None:
    request = urllib.request.Request(f"{nginx.url}/simple/demo-00001/", headers={"Accept": PIP})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Vary"] == "Accept"

"""The mirror's nginx site, as deployed, on the real nginx and its njs module: what
each client's Accept header gets from /simple/ (PEP 691), with the right type."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from nginxkit import LoopbackNginx

from mirrorfleet.content import pypi

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
HTML = "text/html"
PIP = f"{JSON}, {V1_HTML}; q=0.1, text/html; q=0.01"
UV = f"{JSON}, {V1_HTML};q=0.2, text/html;q=0.01"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

NOT_ACCEPTABLE = "406"
ALL_FORMS = "demo-00001"  # index.v1_json, index.v1_html, index.html
NO_V1_HTML = "demo-00000"  # index.v1_json, index.html: what our generator writes
HTML_ONLY = "plain"  # index.html alone: a tree imported from a PEP 503 index

# (Accept, project, the form served). Only forms whose file exists are offered;
# JSON only to a client that names it; ties: named over wildcard, then JSON, PEP
# 691's HTML, text/html (text/html first among wildcard matches).
CASES = [
    (PIP, ALL_FORMS, JSON),
    (UV, ALL_FORMS, JSON),
    (PIP, HTML_ONLY, HTML),  # a 403 before
    (UV, NO_V1_HTML, JSON),
    (UV, HTML_ONLY, HTML),
    (None, ALL_FORMS, HTML),
    ("", ALL_FORMS, HTML),
    ("text/html", ALL_FORMS, HTML),
    (BROWSER, ALL_FORMS, HTML),
    ("*/*", ALL_FORMS, HTML),  # curl and pre-691 tools expect HTML
    ("application/*", ALL_FORMS, V1_HTML),
    ("application/*", NO_V1_HTML, NOT_ACCEPTABLE),  # JSON only when named
    (V1_HTML, ALL_FORMS, V1_HTML),
    (V1_HTML, HTML_ONLY, NOT_ACCEPTABLE),
    (f"{V1_HTML}, {JSON};q=0.5", ALL_FORMS, V1_HTML),
    (f"{JSON};q=0, text/html", ALL_FORMS, HTML),
    (f"{JSON};q=0.3, {V1_HTML};q=0.4", ALL_FORMS, V1_HTML),
    (f"{JSON};q=0.5, */*;q=0.9", ALL_FORMS, HTML),  # the wildcard tie goes to text/html
    (f"{JSON};q=0.9, */*", ALL_FORMS, HTML),
    ("application/vnd.pypi.simple.latest+json", ALL_FORMS, JSON),  # served as v1
    (JSON.upper(), ALL_FORMS, JSON),  # media types are case-insensitive
    (f"{JSON};q=2, text/html;q=0.1", ALL_FORMS, HTML),  # a malformed q voids its range
    (f"{JSON};q=abc", ALL_FORMS, NOT_ACCEPTABLE),
    ("image/png", ALL_FORMS, NOT_ACCEPTABLE),
]
PAGE_OF = {JSON: "index.v1_json", V1_HTML: "index.v1_html", HTML: "index.html"}


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nginx")
    tree = root / "tree"
    pypi.generate(tree, 2)
    (tree / "simple" / HTML_ONLY).mkdir()
    (tree / "simple" / HTML_ONLY / "index.html").write_text("<a href='x'>x</a>")
    all_forms = tree / "simple" / ALL_FORMS  # bandersnatch writes index.v1_html too
    (all_forms / "index.v1_html").write_bytes((all_forms / "index.html").read_bytes())
    with LoopbackNginx(tree, root / "work") as server:
        yield server


def get(nginx: LoopbackNginx, path: str, accept: str | None) -> tuple[str, str, bytes]:
    """(status, Content-Type without parameters, body)."""
    request = urllib.request.Request(f"{nginx.url}{path}")
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.status), response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return str(exc.code), "", b""


@pytest.mark.parametrize(("accept", "project", "form"), CASES)
def test_simple_pages_are_negotiated_per_pep_691(
    nginx, accept: str | None, project: str, form: str
) -> None:
    status, ctype, body = get(nginx, f"/simple/{project}/", accept)
    if form == NOT_ACCEPTABLE:
        assert status == NOT_ACCEPTABLE, (status, ctype)
        return
    assert (status, ctype) == ("200", form), nginx.errors()
    assert body == (nginx.tree / "simple" / project / PAGE_OF[form]).read_bytes()


@pytest.mark.parametrize(("accept", "form"), [(PIP, JSON), (None, HTML), (BROWSER, HTML)])
def test_the_root_page_is_negotiated_too(nginx, accept: str | None, form: str) -> None:
    status, ctype, body = get(nginx, "/simple/", accept)
    assert (status, ctype) == ("200", form)
    assert body == (nginx.tree / "simple" / PAGE_OF[form]).read_bytes()


def test_a_project_that_is_not_there_is_404_whatever_is_asked(nginx) -> None:
    assert get(nginx, "/simple/no-such-project/", PIP)[0] == "404"
    assert get(nginx, "/simple/no-such-project/", "image/png")[0] == "404"


def test_a_page_asked_for_by_name_keeps_its_type(nginx) -> None:
    status, ctype, _body = get(nginx, f"/simple/{ALL_FORMS}/index.v1_json", "text/html")
    assert (status, ctype) == ("200", JSON)


def test_every_answer_says_it_varies_by_accept(nginx) -> None:
    request = urllib.request.Request(f"{nginx.url}/simple/demo-00001/", headers={"Accept": PIP})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Vary"] == "Accept"

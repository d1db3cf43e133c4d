"""The PEP 691 negotiation rule (content/negotiate.py): the spec nginx and the monitor follow.

Cases come from PEP 691 (its example client's Accept header, `latest`, the absence
of a header, q-values and their bounds) and from the clients that meet our mirrors:
pip's and uv's real headers, browsers, curl.
"""

from __future__ import annotations

import pytest

from mirrorfleet.content.negotiate import (
    JSON_PAGE,
    MAX_ENTRIES,
    TEXT_HTML,
    V1_HTML,
    V1_JSON,
    choose_page,
)

BOTH = {"index.html", "index.v1_json"}
HTML_ONLY = {"index.html"}
JSON_ONLY = {"index.v1_json"}
BANDERSNATCH_HTML = {"index.v1_html"}  # a tree whose index.html is missing

# The header PEP 691's example client builds (its "Version + Format Selection").
PEP691_EXAMPLE = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
# pip (src/pip/_internal/index/collector.py), with its spaces
PIP = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

JSON_ANSWER = (JSON_PAGE, V1_JSON)
V1_HTML_ANSWER = ("index.html", V1_HTML)
LEGACY_ANSWER = ("index.html", TEXT_HTML)


@pytest.mark.parametrize(
    ("accept", "available", "expected"),
    [
        # the issue: JSON-first clients get JSON where it exists, HTML where not
        pytest.param(PIP, BOTH, JSON_ANSWER, id="pip-json"),
        pytest.param(PIP, HTML_ONLY, V1_HTML_ANSWER, id="pip-html-only-falls-back"),
        pytest.param(UV, BOTH, JSON_ANSWER, id="uv-json"),
        pytest.param(UV, HTML_ONLY, V1_HTML_ANSWER, id="uv-html-only-falls-back"),
        pytest.param(PEP691_EXAMPLE, BOTH, JSON_ANSWER, id="pep691-example"),
        pytest.param(PEP691_EXAMPLE, HTML_ONLY, V1_HTML_ANSWER, id="pep691-example-html"),
        pytest.param(PIP, BANDERSNATCH_HTML, ("index.v1_html", V1_HTML), id="v1_html-file"),
        pytest.param(PIP, JSON_ONLY, JSON_ANSWER, id="pip-json-only"),
        # PEP 691: no Accept header is `*/*`; a wildcard gets the legacy HTML
        pytest.param(None, BOTH, LEGACY_ANSWER, id="no-header"),
        pytest.param("", BOTH, LEGACY_ANSWER, id="empty-header"),
        pytest.param("*/*", BOTH, LEGACY_ANSWER, id="star-star"),
        pytest.param(FIREFOX, BOTH, LEGACY_ANSWER, id="browser"),
        pytest.param("text/*", BOTH, LEGACY_ANSWER, id="text-star"),
        pytest.param("application/*", BOTH, V1_HTML_ANSWER, id="application-star"),
        # old pip sends only text/html
        pytest.param("text/html", BOTH, LEGACY_ANSWER, id="legacy-client"),
        # latest: the answer names the actual version (PEP 691 MUST)
        pytest.param("application/vnd.pypi.simple.latest+json", BOTH, JSON_ANSWER, id="latest"),
        pytest.param(
            "application/vnd.pypi.simple.latest+html", BOTH, V1_HTML_ANSWER, id="latest-html"
        ),
        # q-values decide, order does not (PEP 691: "order ... not any specific meaning")
        pytest.param(f"text/html, {V1_JSON};q=0.5", BOTH, LEGACY_ANSWER, id="html-preferred"),
        pytest.param(f"{V1_JSON};q=0.5, text/html", BOTH, LEGACY_ANSWER, id="order-ignored"),
        pytest.param(f"{V1_HTML};q=0.9, {V1_JSON};q=0.8", BOTH, V1_HTML_ANSWER, id="q-wins"),
        # ties: named over wildcard, then the server's preference, JSON first
        pytest.param(f"{V1_HTML}, {V1_JSON}", BOTH, JSON_ANSWER, id="tie-json"),
        pytest.param(f"text/html, {V1_JSON}", BOTH, JSON_ANSWER, id="tie-json-legacy"),
        pytest.param(f"text/html, {V1_HTML}", BOTH, V1_HTML_ANSWER, id="tie-v1-html"),
        pytest.param(f"*/*, {V1_JSON};q=1.0", BOTH, JSON_ANSWER, id="named-beats-star"),
        # q=0 means "not this"
        pytest.param(f"{V1_JSON};q=0, */*", BOTH, LEGACY_ANSWER, id="json-refused"),
        pytest.param(f"{V1_JSON};q=0, text/html", JSON_ONLY, None, id="nothing-left"),
        pytest.param(f"text/html;q=0, {V1_HTML};q=0.5", HTML_ONLY, V1_HTML_ANSWER, id="q0-one"),
        pytest.param("text/html;q=0, */*", HTML_ONLY, V1_HTML_ANSWER, id="specific-q0-wins"),
        pytest.param("*/*;q=0", BOTH, None, id="star-q0"),
        # nothing acceptable exists: 406 (PEP 691 recommends it over 300)
        pytest.param(V1_JSON, HTML_ONLY, None, id="json-only-client-html-tree"),
        pytest.param("application/json", BOTH, None, id="plain-json-is-not-pep691"),
        pytest.param("text/html", JSON_ONLY, None, id="html-client-json-tree"),
        pytest.param("application/vnd.pypi.simple.v2+json", BOTH, None, id="unknown-major"),
        pytest.param(PIP, set(), None, id="no-pages"),
        # a wildcard never selects JSON: `*/*` clients expect HTML
        pytest.param("*/*", JSON_ONLY, None, id="star-never-json"),
    ],
)
def test_choose_page(accept: str | None, available: set[str], expected: object) -> None:
    assert choose_page(accept, available) == expected


@pytest.mark.parametrize(
    "accept",
    [
        f"{V1_JSON};q=2, text/html;q=0.5",  # above 1
        f"{V1_JSON};q=0.5555, text/html;q=0.5",  # more than 3 decimals
        f"{V1_JSON};q=-1, text/html;q=0.5",
        f"{V1_JSON};q=high, text/html;q=0.5",
        f"{V1_JSON};q=, text/html;q=0.5",
    ],
)
def test_a_malformed_weight_voids_its_range(accept: str) -> None:
    """RFC 9110's qvalue grammar: 0 to 1 with at most 3 decimals; anything else and the
    range does not count (here leaving text/html)."""
    assert choose_page(accept, BOTH) == LEGACY_ANSWER


@pytest.mark.parametrize(
    "accept",
    [
        "APPLICATION/VND.PYPI.SIMPLE.V1+JSON",  # media types are case-insensitive
        f" {V1_JSON} ; Q=1 ",
        f"{V1_JSON};q=1.000",
        f"{V1_JSON};charset=utf-8;q=0.9",  # other parameters before the weight
        f"{V1_JSON};q=0.9;ext=1",  # accept-ext after the weight
        f"garbage, /, */json, {V1_JSON}",  # entries that are not media ranges are skipped
    ],
)
def test_accept_syntax(accept: str) -> None:
    assert choose_page(accept, BOTH) == JSON_ANSWER


def test_entries_past_the_limit_are_ignored() -> None:
    """A header of thousands of ranges costs no more than MAX_ENTRIES of them."""
    filler = ", ".join(f"x/y{i}" for i in range(MAX_ENTRIES))
    assert choose_page(f"{filler}, {V1_JSON}", BOTH) is None
    assert choose_page(f"{V1_JSON}, {filler}", BOTH) == JSON_ANSWER


def test_the_answer_is_always_a_page_that_exists() -> None:
    """Issue 16's bug, as a property: whatever is asked, the file named is available."""
    headers = [None, "*/*", PIP, UV, FIREFOX, "text/html", V1_JSON, f"{V1_HTML};q=0.3"]
    for available in (BOTH, HTML_ONLY, JSON_ONLY, BANDERSNATCH_HTML, {"index.html", "x"}):
        for accept in headers:
            answer = choose_page(accept, available)
            assert answer is None or answer[0] in available, (accept, available)

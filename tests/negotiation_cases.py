"""The PEP 691 cases both implementations of the rule answer: choose_page
(content/negotiate.py, what the monitor expects) and the mirrors' nginx
(roles/serve_tree/files/pep691.js). One table, so the two cannot drift apart.

Cases come from PEP 691 (its example client's Accept header, `latest`, the absence
of a header, q-values and their bounds) and from the clients that meet our mirrors:
pip's and uv's real headers, browsers, curl.
"""

from __future__ import annotations

import pytest

from mirrorfleet.content.negotiate import JSON_PAGE, TEXT_HTML, V1_HTML, V1_JSON

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

CASES = [
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
    pytest.param("application/vnd.pypi.simple.latest+html", BOTH, V1_HTML_ANSWER, id="latest-html"),
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
]

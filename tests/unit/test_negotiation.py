"""The PEP 691 negotiation rule (content/negotiate.py): the spec nginx and the monitor
follow. The table of cases is tests/negotiation_cases.py, which the real nginx runs
too (test_nginx_site.py)."""

from __future__ import annotations

import pytest
from negotiation_cases import (
    BANDERSNATCH_HTML,
    BOTH,
    CASES,
    FIREFOX,
    HTML_ONLY,
    JSON_ANSWER,
    JSON_ONLY,
    LEGACY_ANSWER,
    PIP,
    UV,
)

from mirrorfleet.content.negotiate import (
    MAX_ENTRIES,
    PIP_ACCEPT,
    UV_ACCEPT,
    V1_HTML,
    V1_JSON,
    choose_page,
)


@pytest.mark.parametrize(("accept", "available", "expected"), CASES)
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


def test_the_monitor_asks_with_the_clients_own_headers() -> None:
    assert (PIP_ACCEPT, UV_ACCEPT) == (PIP, UV)

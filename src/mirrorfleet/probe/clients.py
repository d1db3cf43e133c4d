"""Ask a mirror for a project the way pip and uv ask, and check what they would get.

A mirror can hold a perfect signed tree and still fail every install: its nginx
answered pip's JSON Accept header with 403 (issue 16), serves a page with a type uv
rejects, or lacks a `.metadata` file a page advertises (pip treats that 404 as a
hard error). The stamp and the signed page cannot see any of that; this can.

Given the project's page already checked against the signed manifest, for each
client's Accept header the folder URL must answer 200 with a type that client
takes, in a form that parses and lists the same files with the same sha256 as the
signed page. Then a sample of the `.metadata` files the page advertises must be
there, and the one fetched whole must match the hash the page gives.
"""

from __future__ import annotations

import hashlib
import random
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin

from mirrorfleet import web
from mirrorfleet.content.negotiate import PIP_ACCEPT, TEXT_HTML, UV_ACCEPT, V1_HTML, V1_JSON
from mirrorfleet.content.pages import PageError, metadata_advertised, parse_html, parse_json
from mirrorfleet.probe.fetch import MAX_PAGE, SpotCheckFailed, Unreachable, within

CLIENTS = {"pip": PIP_ACCEPT, "uv": UV_ACCEPT}
PAGE_TYPES = (V1_JSON, V1_HTML, TEXT_HTML)  # both clients take each of them
MAX_METADATA = 1024 * 1024  # a wheel's METADATA; the largest on PyPI are far smaller
METADATA_SAMPLE = 8  # advertised .metadata files asked for per check (HEAD)


def check_as_clients(
    base_url: str, project: str, signed_page: dict[str, Any], timeout: float, rng: random.Random
) -> None:
    """SpotCheckFailed when pip or uv would fail on this project; Unreachable when the
    mirror could not say (a timeout, a 5xx). signed_page: the page the manifest
    vouches for, as parse_html reads it."""
    folder_url = urljoin(base_url, f"simple/{project}/")
    signed = _files(signed_page)
    for client, accept in CLIENTS.items():
        status, ctype, body = _get(folder_url, accept, MAX_PAGE, timeout, check="clients")
        if status != 200:
            raise SpotCheckFailed(f"{client} gets HTTP {status} for {folder_url}", "clients")
        if ctype not in PAGE_TYPES:
            raise SpotCheckFailed(f"{client} gets {ctype or 'no type'} for {folder_url}", "clients")
        try:
            read = parse_json if ctype == V1_JSON else parse_html
            served = _files(read(body, project, f"{folder_url} ({ctype})"))
        except PageError as exc:
            raise SpotCheckFailed(f"{client} cannot read it: {exc}", "clients") from None
        if served != signed:
            raise SpotCheckFailed(
                f"{client} gets a {ctype} page at {folder_url} that lists other files "
                "than the signed page",
                "clients",
            )
    _check_metadata(base_url, folder_url, signed_page, timeout, rng)


def _files(doc: dict[str, Any]) -> dict[str, str]:
    return {entry["filename"]: entry.get("hashes", {}).get("sha256", "") for entry in doc["files"]}


def _check_metadata(
    base_url: str, folder_url: str, doc: dict[str, Any], timeout: float, rng: random.Random
) -> None:
    advertised = [
        entry
        for entry in doc["files"]
        if metadata_advertised(entry) and within(base_url, urljoin(folder_url, entry["url"]))
    ]
    if not advertised:
        return
    sample = rng.sample(advertised, min(METADATA_SAMPLE, len(advertised)))
    whole = sample[0]
    for entry in sample:
        url = urljoin(folder_url, entry["url"]).split("#", 1)[0] + ".metadata"
        if entry is not whole:
            status, _ctype, _body = _get(url, None, 0, timeout, method="HEAD")
            if status != 200:
                raise SpotCheckFailed(f"an advertised {url} answers HTTP {status}", "metadata")
            continue
        status, _ctype, body = _get(url, None, MAX_METADATA, timeout, check="metadata")
        if status != 200:
            raise SpotCheckFailed(f"an advertised {url} answers HTTP {status}", "metadata")
        value = entry.get("core-metadata", entry.get("dist-info-metadata"))
        digest = value.get("sha256") if isinstance(value, dict) else None
        if digest and hashlib.sha256(body).hexdigest() != digest:
            raise SpotCheckFailed(
                f"{url} does not match the sha256 its page advertises", "metadata"
            )


def _get(
    url: str,
    accept: str | None,
    limit: int,
    timeout: float,
    method: str = "GET",
    check: str = "clients",
) -> tuple[int, str, bytes]:
    """(status, Content-Type without parameters, body); Unreachable for no answer or a
    5xx, SpotCheckFailed (of kind `check`) for a body over `limit`."""
    headers = {"Cache-Control": "no-cache"}
    if accept is not None:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with web.urlopen(request, timeout=timeout) as response:
            body = response.read(limit + 1) if method == "GET" else b""
            status, ctype = response.status, response.headers.get_content_type()
            if not response.headers.get("Content-Type"):
                ctype = ""
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise Unreachable(f"{url}: HTTP {exc.code}") from None
        return exc.code, "", b""
    except web.READ_ERRORS as exc:
        raise Unreachable(f"{url}: {exc}") from None
    if len(body) > limit and method == "GET":
        raise SpotCheckFailed(f"{url} is larger than {limit} bytes", check)
    return status, ctype, body

"""Project pages (content/pages.py): PEP 503 HTML <-> PEP 691 JSON, against the PEPs' examples.

The examples are the PEPs' own, with one change where noted: PEP 691 writes its
digests as "...", which no page may carry (a hash fragment is hex), so real-looking
hex stands in.
"""

from __future__ import annotations

import json

import pytest

from mirrorfleet.content import pages
from mirrorfleet.content.pages import FileFacts, PageError

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64

# PEP 691, "Project Detail" (and the packaging spec's copy): the holygrail page.
PEP691_HOLYGRAIL = {
    "meta": {"api-version": "1.0"},
    "name": "holygrail",
    "files": [
        {
            "filename": "holygrail-1.0.tar.gz",
            "url": "https://example.com/files/holygrail-1.0.tar.gz",
            "hashes": {"sha256": H1, "blake2b": H2},
            "requires-python": ">=3.7",
            "yanked": "Had a vulnerability",
        },
        {
            "filename": "holygrail-1.0-py3-none-any.whl",
            "url": "https://example.com/files/holygrail-1.0-py3-none-any.whl",
            "hashes": {"sha256": H3, "blake2b": H2},
            "requires-python": ">=3.7",
            "dist-info-metadata": True,
        },
    ],
}

# A line of PyPI's own page as PEP 714 left it (quoted in tuna/issues#1775), shortened.
PYPI_CRYPTOGRAPHY = (
    '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">'
    "<title>Links for cryptography</title></head><body><h1>Links for cryptography</h1>\n"
    '<a href="https://files.example/packages/d8/80/e3/cryptography-41.0.1-cp37-abi3-'
    f'macosx_10_12_universal2.whl#sha256={H1}" data-requires-python="&gt;=3.7" '
    f'data-dist-info-metadata="sha256={H2}" data-core-metadata="sha256={H2}">'
    "cryptography-41.0.1-cp37-abi3-macosx_10_12_universal2.whl</a><br />\n"
    "</body></html>"
).encode()


def files_by_name(doc: dict) -> dict[str, dict]:
    return {f["filename"]: f for f in doc["files"]}


def facts_of(sizes: dict[str, int], mtime: float = 1_700_000_000) -> object:
    return lambda entry: FileFacts(sizes[entry["filename"]], mtime)


# ---------------------------------------------------------------- reading HTML


def test_pypi_page_with_pep714_metadata() -> None:
    doc = pages.parse_html(PYPI_CRYPTOGRAPHY, "cryptography")
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["name"] == "cryptography"
    (entry,) = doc["files"]
    assert entry == {
        "filename": "cryptography-41.0.1-cp37-abi3-macosx_10_12_universal2.whl",
        "url": "https://files.example/packages/d8/80/e3/"
        "cryptography-41.0.1-cp37-abi3-macosx_10_12_universal2.whl",
        "hashes": {"sha256": H1},
        "requires-python": ">=3.7",  # unescaped
        "core-metadata": {"sha256": H2},  # PEP 714: the new key only, in JSON form
    }


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("data-yanked", True),  # PEP 592: no value, no reason
        ('data-yanked=""', True),
        ('data-yanked="broken on 3.12"', "broken on 3.12"),
        ("", None),
    ],
)
def test_pep592_yanked(attr: str, expected: object) -> None:
    page = f'<a href="f-1.0.tar.gz" {attr}>f-1.0.tar.gz</a>'.encode()
    (entry,) = pages.parse_html(page, "f")["files"]
    assert entry.get("yanked") == expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # PEP 658: true, or <hashname>=<hex>; PEP 714: data-core-metadata wins
        ('data-dist-info-metadata="true"', True),
        (f'data-dist-info-metadata="sha256={H1}"', {"sha256": H1}),
        (f'data-core-metadata="sha256={H1}"', {"sha256": H1}),
        (f'data-dist-info-metadata="sha256={H2}" data-core-metadata="sha256={H1}"', {"sha256": H1}),
        ("data-core-metadata", True),
        ("", None),
    ],
)
def test_pep658_714_metadata(attrs: str, expected: object) -> None:
    page = f'<a href="f-1.0-py3-none-any.whl" {attrs}>f-1.0-py3-none-any.whl</a>'.encode()
    (entry,) = pages.parse_html(page, "f")["files"]
    assert entry.get("core-metadata") == expected
    assert "dist-info-metadata" not in entry
    assert pages.metadata_advertised(entry) is bool(expected)


def test_percent_encoded_urls_and_messy_markup() -> None:
    """What html.parser buys: single quotes, no quotes, anchors across lines, entities,
    a local version's `+` percent-encoded in the URL."""
    page = (
        b"<html><body>\n<A HREF='../../packages/f/f-1.0%2Bcpu-py3-none-any.whl#SHA256="
        + H1.upper().encode()
        + b"'\n   data-requires-python=&lt;4>f-1.0+cpu-py3-none-any.whl</A>\n"
        b"<a href=f-0.9.tar.gz>\n  f-0.9.tar.gz\n</a></body></html>"
    )
    doc = pages.parse_html(page, "F")
    assert doc["name"] == "f"
    assert files_by_name(doc) == {
        "f-1.0+cpu-py3-none-any.whl": {
            "filename": "f-1.0+cpu-py3-none-any.whl",
            "url": "../../packages/f/f-1.0%2Bcpu-py3-none-any.whl",
            "hashes": {"sha256": H1},  # hash names and digests are lower-cased
            "requires-python": "<4",
        },
        "f-0.9.tar.gz": {"filename": "f-0.9.tar.gz", "url": "f-0.9.tar.gz", "hashes": {}},
    }


def test_pep792_status_and_pep740_provenance_from_html() -> None:
    page = (
        b'<meta name="pypi:repository-version" content="1.4">'
        b'<meta name="pypi:project-status" content="archived">'
        b'<meta name="pypi:project-status-reason" content="read only">'
        b'<a href="f-1.0.tar.gz" data-provenance="https://example.com/f.provenance"'
        b' data-gpg-sig="false">f-1.0.tar.gz</a>'
    )
    doc = pages.parse_html(page, "f")
    assert doc["meta"] == {"api-version": "1.4"}
    assert doc["project-status"] == {"status": "archived", "reason": "read only"}
    (entry,) = doc["files"]
    assert entry["provenance"] == "https://example.com/f.provenance"
    assert entry["gpg-sig"] is False


# ---------------------------------------------------------------- converting


def test_pep691_example_to_html_and_back() -> None:
    data = json.dumps(PEP691_HOLYGRAIL).encode()
    page = pages.json_to_html(data, "holygrail")
    text = page.decode()
    assert '<meta name="pypi:repository-version" content="1.0">' in text
    assert f'href="https://example.com/files/holygrail-1.0.tar.gz#sha256={H1}"' in text
    assert 'data-requires-python="&gt;=3.7"' in text
    assert 'data-yanked="Had a vulnerability"' in text
    # PEP 714: both attribute names in HTML, equal
    assert 'data-core-metadata="true" data-dist-info-metadata="true"' in text
    back = pages.parse_html(page, "holygrail")
    original = files_by_name(PEP691_HOLYGRAIL)
    for name, entry in files_by_name(back).items():
        assert entry["url"] == original[name]["url"]
        assert entry["hashes"] == {"sha256": original[name]["hashes"]["sha256"]}
        assert entry["requires-python"] == ">=3.7"
        assert entry.get("yanked") == original[name].get("yanked")
        assert entry.get("core-metadata") == original[name].get("dist-info-metadata")


def test_html_to_json_adds_pep700_fields() -> None:
    page = pages.json_to_html(json.dumps(PEP691_HOLYGRAIL).encode(), "holygrail")
    sizes = {"holygrail-1.0.tar.gz": 1000, "holygrail-1.0-py3-none-any.whl": 2000}
    doc = json.loads(pages.html_to_json(page, "holygrail", facts_of(sizes)))
    assert doc["meta"] == {"api-version": "1.1"}  # PEP 700: size and versions need 1.1
    assert doc["versions"] == ["1.0"]
    for entry in doc["files"]:
        assert entry["size"] == sizes[entry["filename"]]
        assert entry["upload-time"] == "2023-11-14T22:13:20Z"  # PEP 700's format, UTC
        assert "dist-info-metadata" not in entry  # PEP 714: never the old key in JSON
    assert files_by_name(doc)["holygrail-1.0-py3-none-any.whl"]["core-metadata"] is True
    assert pages.parse_json(pages.render_json(doc), "holygrail") == doc


def test_versions_cover_every_file_in_pep440_order() -> None:
    names = [
        "f-1.0.10-py3-none-any.whl",
        "f-1.0.2.tar.gz",
        "f-1.0rc1-py3-none-any.whl",
        "f-1.0-py2.py3-none-any.whl",
        "f-1.0.zip",
        "f-0.9-py2.7.egg",
    ]
    doc = {"meta": {"api-version": "1.0"}, "name": "f", "files": []}
    doc["files"] = [{"filename": n, "url": n, "hashes": {}} for n in names]
    out = pages.to_json_page(doc, facts_of(dict.fromkeys(names, 1)))
    assert out["versions"] == ["0.9", "1.0rc1", "1.0", "1.0.2", "1.0.10"]


def test_sdist_names_with_dashes_use_the_project_name() -> None:
    doc = {"meta": {"api-version": "1.0"}, "name": "foo-bar", "files": []}
    doc["files"] = [{"filename": "foo-bar-2.0-1.tar.gz", "url": "x", "hashes": {}}]
    assert pages.to_json_page(doc, facts_of({"foo-bar-2.0-1.tar.gz": 1}))["versions"] == ["2.0-1"]


def test_what_the_page_says_wins_over_the_files() -> None:
    doc = {
        "meta": {"api-version": "1.4", "_last-serial": 7},
        "name": "f",
        "versions": ["0.1", "1.0"],  # a version without files is allowed (PEP 700)
        "files": [
            {"filename": "f-1.0.tar.gz", "url": "u", "hashes": {}, "size": 5, "upload-time": "x"}
        ],
    }
    out = pages.to_json_page(doc, facts_of({"f-1.0.tar.gz": 99}))
    assert out["meta"] == {"api-version": "1.4", "_last-serial": 7}
    assert out["versions"] == ["0.1", "1.0"]
    assert (out["files"][0]["size"], out["files"][0]["upload-time"]) == (5, "x")
    assert doc["files"][0] == out["files"][0]  # and the input is not changed
    assert out is not doc and out["files"] is not doc["files"]


def test_unknown_json_keys_survive_and_later_versions_render() -> None:
    """PEP 740 provenance, PEP 792 status and private keys are carried, not dropped."""
    doc = {
        "meta": {"api-version": "1.4", "_last-serial": "12"},
        "name": "f",
        "project-status": {"status": "quarantined", "reason": "malware <report>"},
        "_private": [1, 2],
        "versions": ["1.0"],
        "files": [
            {
                "filename": "f-1.0.tar.gz",
                "url": "../../packages/f/f-1.0.tar.gz",
                "hashes": {"sha256": H1},
                "provenance": "https://example.com/f-1.0.tar.gz.provenance",
                "size": 3,
                "_extra": {"deep": True},
            }
        ],
    }
    data = json.dumps(doc).encode()
    assert pages.parse_json(data, "f") == doc
    assert json.loads(pages.render_json(pages.parse_json(data, "f"))) == doc
    html_page = pages.json_to_html(data, "f").decode()
    assert '<meta name="pypi:repository-version" content="1.4">' in html_page
    assert '<meta name="pypi:project-status" content="quarantined">' in html_page
    assert 'content="malware &lt;report&gt;"' in html_page
    assert 'data-provenance="https://example.com/f-1.0.tar.gz.provenance"' in html_page
    back = pages.parse_html(html_page.encode(), "f")
    assert back["project-status"] == doc["project-status"]
    assert back["files"][0]["provenance"] == doc["files"][0]["provenance"]


def test_escaping_round_trips() -> None:
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "a-b",
        "files": [
            {
                "filename": "a_b-1.0-py3-none-any.whl",
                "url": "../../packages/a&b/a_b-1.0-py3-none-any.whl",
                "hashes": {"sha256": H1},
                "requires-python": "<4,>=3.8",
                "yanked": 'said "no" & <left>',
            }
        ],
    }
    back = pages.parse_html(pages.render_html(doc), "a-b")
    assert back["files"] == doc["files"]


# ---------------------------------------------------------------- refusing


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (b"\xff\xfe<a href='x'>x</a>", "not UTF-8"),
        (b'<a href="f-1.tar.gz"><a href="g-1.tar.gz">g</a></a>', "inside another"),
        (b"<a>f-1.tar.gz</a>", "without href"),
        (b'<a href="f-1.tar.gz">', "never closed"),
        (b'<a href="f-1.tar.gz"/>', "self-closing"),
        (b'<a href="x/f-2.tar.gz">f-1.tar.gz</a>', "not the file name"),
        (b'<a href="f-1.tar.gz"></a>', "not the file name"),
        (b'<a href="f-1.tar.gz#sha256">f-1.tar.gz</a>', "fragment"),
        (b'<a href="f-1.tar.gz#sha256=xyz">f-1.tar.gz</a>', "fragment"),
        (b'<a href="f-1.tar.gz#sha256=ab">f-1.tar.gz</a>', "fragment"),  # too short
        (b'<a href="f-1.tar.gz" data-core-metadata="yes">f-1.tar.gz</a>', "core metadata"),
        (b'<a href="f-1.tar.gz" data-gpg-sig="maybe">f-1.tar.gz</a>', "data-gpg-sig"),
        (b'<a href="f-1.tar.gz">f-1.tar.gz</a><a href="f-1.tar.gz">f-1.tar.gz</a>', "twice"),
        (b'<meta name="pypi:repository-version" content="2.0">', "only 1.x"),
        (b'<meta name="pypi:repository-version" content="1">', "Major.Minor"),
        (b'<base href="https://elsewhere.example/"><a href="f.zip">f.zip</a>', "<base>"),
    ],
)
def test_malformed_html_is_refused(page: bytes, message: str) -> None:
    with pytest.raises(PageError, match=r"simple/f/index\.html") as excinfo:
        pages.parse_html(page, "f", source="simple/f/index.html")
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)  # the CLI's one-line path


def good_json(**changes: object) -> bytes:
    doc: dict = {
        "meta": {"api-version": "1.1"},
        "name": "f",
        "files": [{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}}],
    }
    for key, value in changes.items():
        doc[key] = value
    return json.dumps(doc).encode()


def entry(**changes: object) -> list[dict]:
    return [{"filename": "f-1.tar.gz", "url": "f-1.tar.gz", "hashes": {}, **changes}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be an object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting bomb
        (good_json(meta={}), "api-version"),
        (good_json(meta={"api-version": "2.0"}), "only 1.x"),
        (good_json(name="other"), "names project"),
        (good_json(files={}), "no files list"),
        (good_json(files=[1]), "not an object"),
        (good_json(files=[{"filename": "x"}]), "lacks filename or url"),
        (good_json(files=entry(hashes=[])), "hashes"),
        (good_json(files=entry(yanked=1)), "yanked"),
        (good_json(files=entry(**{"core-metadata": "yes"})), "core-metadata"),
        (good_json(files=entry(size=-1)), "size"),
        (good_json(files=entry(size=True)), "size"),
        (good_json(files=entry() + entry()), "twice"),
        (good_json(versions=[1]), "versions"),
    ],
)
def test_malformed_json_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(PageError, match=r"simple/f/index\.v1_json") as excinfo:
        pages.parse_json(data, "f", source="simple/f/index.v1_json")
    assert message in str(excinfo.value)


def test_json_name_may_be_unnormalized() -> None:
    """PEP 691: the name is the normalized one, but old indexes wrote the display name."""
    assert pages.parse_json(good_json(name="F"), "f")["name"] == "F"


def test_sizes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "MAX_PAGE_BYTES", 100)
    with pytest.raises(PageError, match="larger than 100 bytes"):
        pages.parse_html(b" " * 101, "f")
    with pytest.raises(PageError, match="larger than 100 bytes"):
        pages.parse_json(b" " * 101, "f")
    monkeypatch.setattr(pages, "MAX_PAGE_BYTES", 10_000)
    monkeypatch.setattr(pages, "MAX_FILES", 2)
    three = b"".join(f'<a href="f-{i}.zip">f-{i}.zip</a>'.encode() for i in range(3))
    with pytest.raises(PageError, match="more than 2 files"):
        pages.parse_html(three, "f")
    with pytest.raises(PageError, match="more than 2 files"):
        pages.parse_json(good_json(files=entry() * 3), "f")

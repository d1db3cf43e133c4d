"""The proxy's judgement, alone: which bytes a page proves, which page proves a file,
how requests map to tree paths, and how the caches and the candidate list behave."""

from __future__ import annotations

import hashlib
import random
import time

import pytest

from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.client.proxy import AllDown, Proxy, Settings
from mirrorfleet.client.upstream import Lru, MirrorFailed
from mirrorfleet.client.verify import (
    Digest,
    Unverified,
    check_page,
    project_of_file,
    strong,
    tree_path,
)
from mirrorfleet.tree.stamp import Stamp

SHA = "ab" * 32
META = "cd" * 32
PAGE = f"""<!DOCTYPE html>
<html><body>
<a href="../../packages/demo/demo-1.0-py3-none-any.whl#sha256={SHA}"
   data-core-metadata="sha256={META}">demo-1.0-py3-none-any.whl</a>
<a href="../../packages/demo/demo-0.9.tar.gz#md5={"0" * 32}">demo-0.9.tar.gz</a>
<a href="https://elsewhere.example/demo-0.8.zip#sha256={SHA}">demo-0.8.zip</a>
<a href="demo-0.7.tar.gz#sha512={"e" * 128}" data-core-metadata="true">demo-0.7.tar.gz</a>
</body></html>
""".encode()


def test_a_page_proves_its_files_by_tree_path() -> None:
    page = check_page("demo", PAGE, hashlib.sha256(PAGE).hexdigest())
    assert page.project == "demo" and page.body == PAGE
    assert page.files == {
        "packages/demo/demo-1.0-py3-none-any.whl": Digest("sha256", SHA),
        "packages/demo/demo-1.0-py3-none-any.whl.metadata": Digest("sha256", META),
        "packages/demo/demo-0.9.tar.gz": None,  # md5 proves nothing
        "simple/demo/demo-0.7.tar.gz": Digest("sha512", "e" * 128),
        "simple/demo/demo-0.7.tar.gz.metadata": None,  # advertised, with no hash
    }  # the file on another host is not ours to pass on


def test_a_page_that_is_not_the_signed_one_is_refused() -> None:
    with pytest.raises(Unverified, match="not the page its signed manifest names"):
        check_page("demo", PAGE + b" ", hashlib.sha256(PAGE).hexdigest())


def test_a_signed_page_pip_could_not_read_is_refused_with_why() -> None:
    broken = b'<a href="x-1.0.tar.gz">y-1.0.tar.gz</a>'
    with pytest.raises(Unverified, match="cannot be read"):
        check_page("x", broken, hashlib.sha256(broken).hexdigest())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/packages/a/b.whl", "packages/a/b.whl"),
        ("/simple/x/../../packages/a%2Db.whl", "packages/a-b.whl"),
        ("/../../etc/passwd", "etc/passwd"),  # nothing climbs above the tree
        ("//packages//a.whl", "packages/a.whl"),
    ],
)
def test_request_paths_name_tree_paths(path: str, expected: str) -> None:
    assert tree_path(path) == expected


@pytest.mark.parametrize(
    ("path", "project"),
    [
        ("packages/x/Foo_Bar-1.0-py3-none-any.whl", "foo-bar"),
        ("packages/x/Foo_Bar-1.0-py3-none-any.whl.metadata", "foo-bar"),
        ("packages/x/zope.interface-5.0.tar.gz", "zope-interface"),
        ("packages/x/foo-bar-1.0.tar.gz", "foo-bar"),
        ("packages/x/README", None),
        ("packages/x/nodash.tar.gz", None),
    ],
)
def test_the_page_that_proves_a_file_is_found_from_its_name(path: str, project: str) -> None:
    assert project_of_file(path) == project


def test_the_strongest_hash_named_is_used() -> None:
    assert strong({"md5": "00", "sha512": "AA", "sha256": "BB"}) == Digest("sha256", "bb")
    assert strong({"md5": "00", "sha1": "11"}) is None


def test_the_cache_keeps_the_newest_within_its_budget() -> None:
    cache: Lru[str, bytes] = Lru(10, len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the newest
    cache.put("c", b"1234")
    assert "b" not in cache and "a" in cache and "c" in cache


def listed(target: str, priority: int = 10, state: str = "fresh", serial: int = 5) -> Listed:
    now = int(time.time())
    return Listed(target, 443, priority, 10, state, serial, now, now, f"http://{target}/")


def head(serial: int = 5, lifetime: int = 600) -> Stamp:
    now = int(time.time())
    return Stamp(serial, now, "origin", now + lifetime)


def proxy_over(*mirrors: Listed, stamp: Stamp | None = None, floor: int = 0) -> Proxy:
    found = Discovery("mirrors.test.", stamp or head(), tuple(mirrors))

    class Memory:
        def serial(self, zone: str) -> int:
            return floor

    return Proxy(lambda: (found, ()), Settings("mirrors.test."), Memory(), random.Random(1))  # type: ignore[arg-type]


def test_dns_verdicts_decide_the_candidates_and_say_why() -> None:
    proxy = proxy_over(listed("a"), listed("b", state="lagging"), listed("c", state="down"))
    proxy.refresh()
    assert [m.target for m in proxy.mirrors] == ["a"]
    assert dict(proxy.skipped) == {"b": "lagging at serial 5", "c": "down"}


def test_a_failed_mirror_is_set_aside_and_every_reason_is_named_when_all_fail() -> None:
    proxy = proxy_over(listed("a"), listed("b", priority=20))

    def fail(mirror):  # type: ignore[no-untyped-def]
        raise MirrorFailed(f"{mirror.target} said no", "server-error")

    with pytest.raises(AllDown) as caught:
        proxy._on_each("page", fail)
    message = str(caught.value)
    assert "no mirror of mirrors.test. can answer" in message
    assert "a: server-error: a said no" in message and "b: server-error: b said no" in message
    assert all(m.down_until > time.monotonic() for m in proxy.mirrors)
    with pytest.raises(AllDown, match=r"set aside for \d+s more"):
        proxy._on_each("page", fail)  # at once, without asking either again


def test_the_mirror_in_use_stays_first_across_discoveries() -> None:
    mirrors = [listed(t) for t in "abcdef"]
    proxy = proxy_over(*mirrors)
    proxy.refresh()
    chosen = proxy.mirrors[3]
    proxy.current = chosen.target
    for _ in range(5):
        proxy._last_discovery = -float("inf")  # as if min_ttl had passed
        proxy.refresh(force=True)
        assert proxy.metrics.discoveries.labels("ok")._value.get() == _ + 2
        assert proxy.mirrors[0].target == chosen.target


def test_a_head_older_than_this_machine_verified_is_a_rollback() -> None:
    proxy = proxy_over(listed("a"), floor=9)
    proxy.refresh()
    assert proxy.discovery is None
    assert "older than serial 9 this machine already verified" in str(proxy.problem)
    with pytest.raises(AllDown, match="could not be discovered"):
        proxy._on_each("page", lambda mirror: None)  # type: ignore[arg-type,return-value]


def test_an_expired_head_is_not_served() -> None:
    proxy = proxy_over(listed("a"), stamp=head(lifetime=-1))
    proxy.refresh()
    assert proxy.discovery is None and "not fresh" in str(proxy.problem)

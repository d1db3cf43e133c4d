"""`mirrorfleet keys root init / certify / rotate / revoke / show`: the files they
write (and their modes), their --json, --dry-run writing nothing, reruns changing
nothing, and the refusals an operator must see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mirrorfleet.cli import cli
from mirrorfleet.errors import UserError
from mirrorfleet.tree.keyfiles import RootDir
from mirrorfleet.tree.keys import SecretsDir, init_secrets, key_id, load_signing_key
from mirrorfleet.tree.signed import sign, verify
from mirrorfleet.tree.trust import DAY, parse_keys, trusted_keys


def run(*args: str | Path) -> Any:
    """The command's --json output; the test fails with its output if it failed."""
    result = CliRunner().invoke(cli, ["keys", *map(str, args), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def refused(*args: str | Path) -> str:
    """The UserError message of a command that must refuse."""
    result = CliRunner().invoke(cli, ["keys", *map(str, args)])
    assert isinstance(result.exception, UserError), (result.output, result.exception)
    return str(result.exception)


def snapshot(*folders: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mode: what "nothing changed" compares."""
    return {
        str(p): (p.read_bytes(), p.stat().st_mode & 0o777)
        for folder in folders
        if folder.exists()
        for p in sorted(folder.rglob("*"))
    }


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def offline(tmp_path: Path) -> Path:
    """Three root keys, two of which must sign."""
    run("root", "init", "--dir", tmp_path / "offline", "--count", "3")
    return tmp_path / "offline"


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    init_secrets(tmp_path / "secrets")
    return tmp_path / "secrets"


def online_id(secrets: Path) -> str:
    return key_id(load_signing_key(SecretsDir(secrets).signing_key).public_key())


def test_root_init_makes_private_keys_and_what_to_pin(tmp_path: Path) -> None:
    folder = tmp_path / "offline"
    result = run("root", "init", "--dir", folder, "--count", "3")
    assert result["created"] == [
        "root-1.key",
        "root-1.pub",
        "root-2.key",
        "root-2.pub",
        "root-3.key",
        "root-3.pub",
        "roots.json",
    ]
    assert result["threshold"] == 2 and result["dry_run"] is False  # a majority by default
    assert mode(folder) == 0o700
    assert [mode(folder / f"root-{n}.key") for n in (1, 2, 3)] == [0o600] * 3
    assert mode(folder / "roots.json") == 0o644
    roots = RootDir(folder).read()
    assert [r["id"] for r in result["roots"]] == roots.ids
    assert roots.ids == [
        key_id(load_signing_key(folder / f"root-{n}.key").public_key()) for n in (1, 2, 3)
    ]
    assert (folder / "root-2.pub").read_text().strip() == result["roots"][1]["key"]


def test_root_init_rerun_does_nothing_and_refuses_another_set(offline: Path) -> None:
    before = snapshot(offline)
    assert run("root", "init", "--dir", offline)["created"] == []
    assert (
        run("root", "init", "--dir", offline, "--count", "3", "--threshold", "2")["created"] == []
    )
    assert snapshot(offline) == before
    assert "holds a root set of 3 key(s), threshold 2; changing it is a root rotation" in refused(
        "root", "init", "--dir", offline, "--threshold", "3"
    )


def test_root_init_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = run("root", "init", "--dir", tmp_path / "offline", "--count", "2", "--dry-run")
    assert result["dry_run"] is True and result["roots"] is None
    assert result["created"] == [
        "root-1.key",
        "root-1.pub",
        "root-2.key",
        "root-2.pub",
        "roots.json",
    ]
    assert not (tmp_path / "offline").exists()
    assert "--threshold 3 is not between 1 and --count 2" in refused(
        "root", "init", "--dir", tmp_path / "offline", "--count", "2", "--threshold", "3"
    )


def test_certify_writes_a_document_the_pinned_roots_accept(offline: Path, secrets: Path) -> None:
    result = run("certify", "--root-dir", offline, "--secrets", secrets, "--days", "90")
    assert result["changed"] is True and result["reason"] == "there is no keys document yet"
    assert result["key"] == online_id(secrets)
    doc = result["document"]
    assert doc["version"] == 1 and doc["threshold"] == 2
    assert doc["expires"] == doc["issued"] + 90 * DAY
    [online] = doc["online"]
    assert online["id"] == online_id(secrets) and online["state"] == "valid" and online["signing"]
    assert online["not_after"] - online["not_before"] == 90 * DAY
    path = secrets / "keys.json"
    assert result["path"] == str(path) and mode(path) == 0o644
    # what a verifier does, pinning only roots.json
    roots = RootDir(offline).read()
    parsed = parse_keys(path.read_bytes(), roots.publics, 2, doc["issued"])
    assert len(json.loads(path.read_bytes())["signatures"]) == 3
    stamp = sign({"serial": 1}, load_signing_key(SecretsDir(secrets).signing_key))
    assert verify(stamp, trusted_keys(roots.publics, 2, parsed, doc["issued"])) == {"serial": 1}


def test_certify_rerun_changes_nothing_until_renewal_is_due(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets, "--days", "40")
    before = snapshot(secrets)
    again = run("certify", "--root-dir", offline, "--secrets", secrets, "--days", "40")
    assert again["changed"] is False and again["reason"] is None
    assert again["document"]["version"] == 1
    assert snapshot(secrets) == before
    # 40 days left is not "long enough" when renewal is due 45 days ahead
    renewed = run(
        "certify", "--root-dir", offline, "--secrets", secrets, "--days", "60",
        "--renew-within", "45",
    )  # fmt: skip
    assert renewed["changed"] is True and "in under 45d" in renewed["reason"]
    assert renewed["document"]["version"] == 2
    assert "--days 30 must be more than --renew-within 30" in refused(
        "certify", "--root-dir", offline, "--secrets", secrets, "--days", "30"
    )


def test_certify_dry_run_writes_nothing(offline: Path, secrets: Path) -> None:
    before = snapshot(offline, secrets)
    result = run("certify", "--root-dir", offline, "--secrets", secrets, "--dry-run")
    assert result["changed"] is True and result["dry_run"] is True
    assert result["document"]["version"] == 1
    assert snapshot(offline, secrets) == before


def test_certify_needs_the_threshold_of_root_keys_present(offline: Path, secrets: Path) -> None:
    (offline / "root-3.key").unlink()
    (offline / "root-2.key").unlink()
    assert "holds 1 of the 3 root keys, and 2 must sign" in refused(
        "certify", "--root-dir", offline, "--secrets", secrets
    )
    assert not (secrets / "keys.json").exists()


def test_certify_signs_with_the_root_keys_present(offline: Path, secrets: Path) -> None:
    (offline / "root-3.key").unlink()  # kept elsewhere: two of three are enough
    run("certify", "--root-dir", offline, "--secrets", secrets)
    signers = [s["key"] for s in json.loads((secrets / "keys.json").read_bytes())["signatures"]]
    assert sorted(signers) == sorted(RootDir(offline).read().ids[:2])


def test_rotate_installs_a_new_key_and_keeps_the_old_one(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    old_id, old_bytes = online_id(secrets), (secrets / "origin-signing.key").read_bytes()
    old_key = load_signing_key(secrets / "origin-signing.key")
    result = run("rotate", "--root-dir", offline, "--secrets", secrets, "--retire-after", "7")
    new_id = online_id(secrets)
    assert result["old"]["id"] == old_id and result["new"]["id"] == new_id != old_id
    doc = result["document"]
    assert doc["version"] == 2 and result["resumed"] is False
    assert result["old"]["valid_until"] == doc["issued"] + 7 * DAY
    assert result["new"]["not_after"] == doc["issued"] + 365 * DAY
    assert {k["id"]: (k["state"], k["signing"]) for k in doc["online"]} == {
        old_id: ("valid", False),
        new_id: ("valid", True),
    }
    kept = secrets / f"origin-signing.key.{old_id}.old"
    assert result["old"]["kept"] == str(kept)
    assert kept.read_bytes() == old_bytes and mode(kept) == 0o600
    assert mode(secrets / "origin-signing.key") == 0o600
    assert not (secrets / "origin-signing.key.new").exists()
    new_entry = next(k for k in doc["online"] if k["id"] == new_id)
    assert (secrets / "origin-signing.pub").read_text().strip() == new_entry["key"]
    # the verifiers pin the same roots as before, and accept both keys' signatures
    roots = RootDir(offline).read()
    parsed = parse_keys((secrets / "keys.json").read_bytes(), roots.publics, 2, doc["issued"])
    keys = trusted_keys(roots.publics, 2, parsed, doc["issued"])
    new_key = load_signing_key(secrets / "origin-signing.key")
    for signer in (old_key, new_key):
        assert verify(sign({"serial": 2}, signer), keys) == {"serial": 2}
    assert trusted_keys(roots.publics, 2, parsed, doc["issued"] + 7 * DAY + 1) != keys


def test_rotate_without_retire_keeps_the_old_certificate(offline: Path, secrets: Path) -> None:
    first = run("certify", "--root-dir", offline, "--secrets", secrets)["document"]
    result = run("rotate", "--root-dir", offline, "--secrets", secrets, "--days", "400")
    assert result["old"]["valid_until"] == first["online"][0]["not_after"]
    assert result["document"]["expires"] == result["new"]["not_after"]


def test_rotate_dry_run_writes_nothing(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    before = snapshot(offline, secrets)
    result = run("rotate", "--root-dir", offline, "--secrets", secrets, "--dry-run")
    assert result["dry_run"] is True and result["document"]["version"] == 2
    assert snapshot(offline, secrets) == before


def test_an_interrupted_rotation_resumes_with_its_key(offline: Path, secrets: Path) -> None:
    """A rotation that wrote its new key and stopped: the rerun certifies that key."""
    from mirrorfleet.tree.keyfiles import pending_key

    run("certify", "--root-dir", offline, "--secrets", secrets)
    pending, _ = pending_key(SecretsDir(secrets))
    result = run("rotate", "--root-dir", offline, "--secrets", secrets)
    assert result["resumed"] is True
    assert result["new"]["id"] == key_id(pending.public_key()) == online_id(secrets)


def test_revoke_refuses_the_only_key_and_the_signing_key(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    only = online_id(secrets)
    before = snapshot(secrets)
    message = refused("revoke", only, "--root-dir", offline, "--secrets", secrets)
    assert f"key {only} is the only valid online key" in message
    assert "until a new key is certified" in message
    run("rotate", "--root-dir", offline, "--secrets", secrets, "--retire-after", "3")
    assert f"key {online_id(secrets)} is the origin's signing key" in refused(
        "revoke", online_id(secrets), "--root-dir", offline, "--secrets", secrets
    )
    assert snapshot(secrets) != before  # the rotation's, not the refusals'


def test_revoke_after_rotation_then_rerun(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    old = online_id(secrets)
    run("rotate", "--root-dir", offline, "--secrets", secrets)
    new = online_id(secrets)
    dry = run("revoke", old, "--root-dir", offline, "--secrets", secrets, "--dry-run")
    assert dry["changed"] is True and dry["document"]["version"] == 3
    assert json.loads((secrets / "keys.json").read_bytes())["signed"]["version"] == 2
    result = run("revoke", old, "--root-dir", offline, "--secrets", secrets)
    assert result["changed"] is True and result["revoked"] == old
    assert result["valid_left"] == [new] and result["signing_key_revoked"] is False
    assert result["document"]["revoked"] == [old]
    assert [k["id"] for k in result["document"]["online"]] == [new]
    before = snapshot(secrets)
    again = run("revoke", old, "--root-dir", offline, "--secrets", secrets)
    assert again["changed"] is False and again["document"]["version"] == 3
    assert snapshot(secrets) == before


def test_revoke_force_stops_the_only_key(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    only = online_id(secrets)
    result = run("revoke", only, "--root-dir", offline, "--secrets", secrets, "--force")
    assert result["signing_key_revoked"] is True and result["valid_left"] == []
    assert "is revoked: it is never certified again" in refused(
        "certify", "--root-dir", offline, "--secrets", secrets
    )


def test_show_json(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    shown = run("show", "--secrets", secrets)
    assert sorted(shown) == [
        "checked_against",
        "digest",
        "expired",
        "expires",
        "head",
        "issued",
        "online",
        "path",
        "revoked",
        "roots",
        "threshold",
        "version",
    ]
    assert shown["checked_against"] == "the roots it lists"
    assert shown["head"] == {"kv": "1", "kd": shown["digest"][:16]}
    assert [r["id"] for r in shown["roots"]] == RootDir(offline).read().ids
    assert sorted(shown["online"][0]) == [
        "id",
        "key",
        "not_after",
        "not_before",
        "signing",
        "state",
    ]
    pinned = run("show", "--secrets", secrets, "--root-dir", offline)
    assert pinned["checked_against"] == str(offline / "roots.json")


def test_show_refuses_a_tampered_document(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    path = secrets / "keys.json"
    path.write_bytes(path.read_bytes().replace(b'"version":1', b'"version":9'))
    assert "does not verify: keys document: 0 valid signature(s)" in refused(
        "show", "--secrets", secrets
    )
    assert "does not verify against the root set" in refused(
        "certify", "--root-dir", offline, "--secrets", secrets
    )


def test_the_real_command_prints_one_line_and_exits_1(offline: Path, secrets: Path) -> None:
    run("certify", "--root-dir", offline, "--secrets", secrets)
    only = online_id(secrets)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    command = [sys.executable, "-c", "from mirrorfleet.cli import main; main()", "keys", "revoke"]
    done = subprocess.run(
        [*command, only, "--root-dir", str(offline), "--secrets", str(secrets)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: key {only} is the only valid online key")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["root", "certify", "rotate", "revoke", "show"])
def test_every_command_says_why_in_its_help(command: str) -> None:
    result = CliRunner().invoke(cli, ["keys", command, "--help"])
    assert result.exit_code == 0
    assert {"root": "Verifiers pin the roots", "certify": "valid long enough",
            "rotate": "stays in trees until rewritten", "revoke": "no later document",
            "show": "what verifiers pin"}[command] in " ".join(result.output.split())  # fmt: skip

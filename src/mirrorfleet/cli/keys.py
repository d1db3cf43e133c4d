"""`mirrorfleet keys`: create the fleet's secrets, the offline root keys, and the keys
document by which the roots certify (rotate, revoke) the origin's online key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mirrorfleet.cli.options import json_option
from mirrorfleet.cli.output import emit_json, out, table, warn
from mirrorfleet.errors import UserError

if TYPE_CHECKING:
    from mirrorfleet.tree.trust import KeysDocument


@click.group()
def keys() -> None:
    """The fleet's secrets, the offline root keys and the keys document.

    `init` makes the secrets folder (the origin's online signing key, the ping secret,
    the TSIG keys). `root init`, `certify`, `rotate`, `revoke` and `show` manage the
    offline root that vouches for the online key, so verifiers pin the root and a key
    change needs no change on them (docs/KEYS.md).
    """


@keys.command(name="init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Secrets folder (0700; files 0600). Never inside a git checkout you push.",
)
@json_option
def keys_init(directory: Path, as_json: bool) -> None:
    """Create whatever secrets are missing; existing ones are never overwritten."""
    from mirrorfleet.tree.keys import SecretsDir, init_secrets, parse_public_key

    created = init_secrets(directory)
    public = SecretsDir(directory).public_key.read_text().strip()
    parse_public_key(public)
    if as_json:
        emit_json({"dir": str(directory), "created": created, "public_key": public})
    else:
        out.print(
            f"{'created ' + ', '.join(created) if created else 'nothing to do'} in {directory}"
        )
        out.print(f"origin public key: {public}")


# The offline root and the keys document (tree/trust.py, tree/keyfiles.py). Every
# command that writes takes --dry-run; the documents are computed (and signed, so a
# missing root key shows) either way.

root_dir_option = click.option(
    "--root-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The offline folder of root keys (`keys root init`), kept apart from the fleet.",
)
secrets_option = click.option(
    "--secrets",
    "secrets_path",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The fleet's secrets folder (`keys init`): its online key, and keys.json.",
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Say what would change; write nothing."
)
days_option = click.option(
    "--days",
    type=click.IntRange(1),
    default=365,
    show_default=True,
    help="How long the certificate runs: verifiers refuse the key after it.",
)


def _now() -> int:
    import time

    return int(time.time())


def _summary(doc: KeysDocument, now: int, signing: str | None) -> dict[str, Any]:
    """A keys document as `--json` prints it, with each key's state at `now`."""
    from mirrorfleet.tree.trust import head_pointer, valid_online

    valid = {c.kid for c in valid_online(doc, now)}
    online = []
    for cert in doc.online:
        state = "revoked" if cert.kid in doc.revoked else cert.state(now)
        if state == "valid" and cert.kid not in valid:
            state = "document expired"
        online.append(
            {
                "id": cert.kid,
                "key": cert.key,
                "not_before": cert.not_before,
                "not_after": cert.not_after,
                "state": state,
                "signing": cert.kid == signing,
            }
        )
    return {
        "version": doc.version,
        "issued": doc.issued,
        "expires": doc.expires,
        "expired": doc.expired(now),
        "digest": doc.digest,
        "head": dict(head_pointer(doc)),
        "roots": [
            {"id": kid, "key": key} for kid, key in zip(doc.root_ids, doc.roots, strict=True)
        ],
        "threshold": doc.threshold,
        "online": online,
        "revoked": list(doc.revoked),
    }


def _print_document(summary: dict[str, Any]) -> None:
    from mirrorfleet.tree.trust import when

    expired = " [red](expired)[/]" if summary["expired"] else ""
    out.print(
        f"keys document version {summary['version']}, issued {when(summary['issued'])}, "
        f"expires {when(summary['expires'])}{expired}"
    )
    roots = ", ".join(r["id"] for r in summary["roots"])
    out.print(f"roots (threshold {summary['threshold']} of {len(summary['roots'])}): {roots}")
    listing = table("online key", "from", "until", "state", "")
    for key in summary["online"]:
        listing.add_row(
            key["id"],
            when(key["not_before"])[:10],
            when(key["not_after"])[:10],
            key["state"],
            "signing now" if key["signing"] else "",
        )
    out.print(listing)
    out.print(f"revoked: {', '.join(summary['revoked']) or 'none'}")


@keys.group(name="root")
def root() -> None:
    """The offline root keys that certify the origin's online key.

    Verifiers pin the roots (and how many must sign), not the online key, so the
    online key can be rotated or revoked without touching any of them.
    """


@root.command(name="init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The offline folder (0700; keys 0600). Not the secrets folder: keep it off the fleet.",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="How many root keys (default 1); held by different people or places.",
)
@click.option(
    "--threshold",
    type=click.IntRange(1),
    default=None,
    help="How many roots must sign a keys document (default: a majority of --count).",
)
@dry_run_option
@json_option
def root_init(
    directory: Path, count: int | None, threshold: int | None, dry_run: bool, as_json: bool
) -> None:
    """Create the root key(s) offline, and roots.json: what every verifier pins.

    Never overwrites: a rerun with the same (or no) --count and --threshold has nothing
    to do, and a different one is refused (that would be a root rotation).
    """
    from mirrorfleet.tree.keyfiles import init_roots

    created, roots = init_roots(directory, count, threshold, dry_run=dry_run)
    shown = (
        [{"id": i, "key": k} for i, k in zip(roots.ids, roots.keys, strict=True)] if roots else []
    )
    result = {
        "dir": str(directory),
        "dry_run": dry_run,
        "created": created,
        "roots": shown if roots else None,
        "threshold": roots.threshold if roots else None,
    }
    if as_json:
        emit_json(result)
        return
    verb = "would create" if dry_run else "created"
    out.print(f"{verb + ' ' + ', '.join(created) if created else 'nothing to do'} in {directory}")
    if roots:
        out.print(f"root keys to pin (threshold {roots.threshold}):")
        for entry in shown:
            out.print(f"  {entry['id']}  {entry['key']}")


def _certify_checks(days: int, renew_within: int) -> None:
    if days <= renew_within:
        raise UserError(
            f"--days {days} must be more than --renew-within {renew_within}, "
            "or every run would renew the certificate"
        )


@keys.command(name="certify")
@root_dir_option
@secrets_option
@days_option
@click.option(
    "--renew-within",
    type=click.IntRange(0),
    default=30,
    show_default=True,
    help="Certify again when the certificate or the document ends within this many days.",
)
@dry_run_option
@json_option
def certify_command(
    root_dir: Path,
    secrets_path: Path,
    days: int,
    renew_within: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Certify the secrets folder's online key: a new keys.json, signed by the roots.

    The first run makes version 1; later runs renew. A key that is certified, not
    revoked, and whose certificate and document both run at least --renew-within days
    more is "valid long enough": nothing to do, nothing written. A deploy then copies
    keys.json to the origin, which publishes it in the tree.
    """
    from mirrorfleet.tree.keyfiles import RootDir, keys_file, online_key, read_document
    from mirrorfleet.tree.keyfiles import write_document as write
    from mirrorfleet.tree.keys import SecretsDir, key_id
    from mirrorfleet.tree.trust import certify, needs_certificate

    _certify_checks(days, renew_within)
    now, secrets, folder = _now(), SecretsDir(secrets_path), RootDir(root_dir)
    roots = folder.read()
    key = online_key(secrets).public_key()
    doc = read_document(secrets, roots, now)
    reason = needs_certificate(doc, key, now, renew_within)
    if reason is not None:
        doc = certify(doc, key, now, days)
        raw = doc.sign(folder.signing_keys(roots))
        if not dry_run:
            write(secrets, raw)
    result = {
        "changed": reason is not None,
        "reason": reason,
        "dry_run": dry_run,
        "path": str(keys_file(secrets)),
        "key": key_id(key),
        "document": _summary(doc, now, key_id(key)),
    }
    if as_json:
        emit_json(result)
        return
    if reason is None:
        out.print(
            f"nothing to do: key {key_id(key)} is certified for more than {renew_within} days"
        )
    else:
        verb = "would write" if dry_run else "wrote"
        out.print(f"{reason}: {verb} {keys_file(secrets)} version {doc.version}")
    _print_document(result["document"])


@keys.command(name="rotate")
@root_dir_option
@secrets_option
@days_option
@click.option(
    "--retire-after",
    type=click.IntRange(0),
    default=None,
    help=(
        "End the old key's certificate this many days from now (default: it runs out). "
        "Shards and change records the old key signed stay in the trees until they are "
        "rewritten, so it must stay valid until then; 0 refuses them at once."
    ),
)
@dry_run_option
@json_option
def rotate_command(
    root_dir: Path,
    secrets_path: Path,
    days: int,
    retire_after: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Make a new online key, certify it, and keep the old one valid for a while.

    The old private key is kept as origin-signing.key.<id>.old (0600); the new one
    becomes origin-signing.key. Metadata the old key signed (shards, change records)
    stays in trees until rewritten, so the old key stays certified until its
    certificate ends or --retire-after. Deploy the secrets folder afterwards: the
    origin signs with the new key and publishes the new keys.json; verifiers pin the
    roots, so none of them changes. An interrupted rotation resumes on a rerun.
    """
    from mirrorfleet.tree.keyfiles import (
        RootDir,
        install_pending,
        keys_file,
        old_key_file,
        online_key,
        pending_key,
        read_document,
        write_document,
    )
    from mirrorfleet.tree.keys import SecretsDir, key_id
    from mirrorfleet.tree.trust import rotate, when

    now, secrets, folder = _now(), SecretsDir(secrets_path), RootDir(root_dir)
    roots = folder.read()
    old = online_key(secrets).public_key()
    doc = read_document(secrets, roots, now)
    signers = folder.signing_keys(roots)  # before any key is made: fail with nothing written
    new, resumed = pending_key(secrets, dry_run=dry_run)
    new_id = key_id(new.public_key())
    cert = doc.certificate(new_id)
    if not (resumed and cert is not None and cert.state(now) == "valid"):
        doc = rotate(doc, new.public_key(), now, days, retire_after)
        raw = doc.sign(signers)
        if not dry_run:
            write_document(secrets, raw)
    if not dry_run:
        install_pending(secrets)
    old_cert, new_cert = doc.certificate(key_id(old)), doc.certificate(new_id)
    assert new_cert is not None  # rotate() certified it, or a resumed rotation had
    result = {
        "dry_run": dry_run,
        "resumed": resumed,
        "path": str(keys_file(secrets)),
        "old": {
            "id": key_id(old),
            "kept": str(old_key_file(secrets, key_id(old))),
            "valid_until": old_cert.not_after if old_cert else None,
        },
        "new": {"id": new_id, "not_after": new_cert.not_after},
        "document": _summary(doc, now, key_id(old) if dry_run else new_id),
    }
    if as_json:
        emit_json(result)
        return
    verb = "would rotate" if dry_run else "rotated"
    until = result["old"]["valid_until"]
    stays = f"stays valid until {when(until)}" if until else "was not certified"
    out.print(f"{verb} the online key {key_id(old)} -> {new_id}; the old key {stays}")
    out.print("deploy the secrets folder to the origin; verifiers pin the roots, nothing else")
    _print_document(result["document"])


@keys.command(name="revoke")
@click.argument("key_id_text", metavar="KEY_ID")
@root_dir_option
@secrets_option
@click.option(
    "--force",
    is_flag=True,
    help=(
        "Revoke even the only valid online key: the origin then signs nothing any "
        "verifier accepts until a new key is certified (a compromised key: stop it)."
    ),
)
@dry_run_option
@json_option
def revoke_command(
    key_id_text: str,
    root_dir: Path,
    secrets_path: Path,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Revoke an online key (its 16-hex id, as `keys show` lists it): a new keys.json,
    signed by the roots, listing it as revoked.

    Verifiers that load the new document refuse everything the key signed, even
    inside its certificate's period, and no later document can bring it back. A key
    revoked already: nothing to do. The origin's current signing key, or the only
    valid one, is refused without --force: rotate first, then revoke the old key.
    """
    from mirrorfleet.tree.keyfiles import (
        RootDir,
        keys_file,
        online_key,
        read_document,
        write_document,
    )
    from mirrorfleet.tree.keys import SecretsDir, key_id
    from mirrorfleet.tree.trust import revoke, valid_online

    now, secrets, folder = _now(), SecretsDir(secrets_path), RootDir(root_dir)
    roots = folder.read()
    doc = read_document(secrets, roots, now)
    new = revoke(doc, key_id_text, now, force=force)
    changed = new.version != doc.version
    signing = key_id(online_key(secrets).public_key()) if secrets.signing_key.exists() else None
    if changed and key_id_text == signing and not force:
        raise UserError(
            f"key {signing} is the origin's signing key in {secrets.path}: revoked, every "
            "stamp the origin signs next is refused. Rotate first (`mirrorfleet keys "
            "rotate`), then revoke the old key; or pass --force"
        )
    if changed:
        raw = new.sign(folder.signing_keys(roots))
        if not dry_run:
            write_document(secrets, raw)
    result = {
        "changed": changed,
        "dry_run": dry_run,
        "revoked": key_id_text,
        "path": str(keys_file(secrets)),
        "signing_key_revoked": signing is not None and signing in new.revoked,
        "valid_left": [c.kid for c in valid_online(new, now)],
        "document": _summary(new, now, signing),
    }
    if as_json:
        emit_json(result)
        return
    if not changed:
        out.print(f"nothing to do: key {key_id_text} is revoked already")
    else:
        verb = "would write" if dry_run else "wrote"
        out.print(f"revoked {key_id_text}: {verb} {keys_file(secrets)} version {new.version}")
    if result["signing_key_revoked"]:
        warn([f"the origin's key {signing} is revoked: `mirrorfleet keys rotate` makes a new one"])
    _print_document(result["document"])


@keys.command(name="show")
@secrets_option
@click.option(
    "--root-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Check the signatures against this folder's roots.json, not the roots listed.",
)
@json_option
def show_command(secrets_path: Path, root_dir: Path | None, as_json: bool) -> None:
    """The current keys document: version, expiry, online keys with their periods and
    state, revoked ids, the root ids and threshold.

    Checked against the roots it lists, or with --root-dir against the offline
    folder's (what verifiers pin); an expired document is shown, and said to be.
    """
    import json

    from mirrorfleet.tree.keyfiles import RootDir, keys_file, online_key
    from mirrorfleet.tree.keys import SecretsDir, key_id, parse_public_key
    from mirrorfleet.tree.signed import BadSignature
    from mirrorfleet.tree.trust import KeysDocument, parse_keys

    now, secrets = _now(), SecretsDir(secrets_path)
    path = keys_file(secrets)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no {path}: `mirrorfleet keys certify` makes it") from None
    try:
        if root_dir is not None:
            roots = RootDir(root_dir).read()
            anchors, threshold = roots.publics, roots.threshold
            against = str(RootDir(root_dir).roots_file)
        else:
            listed = KeysDocument.from_signed(json.loads(raw)["signed"])
            anchors = [parse_public_key(r) for r in listed.roots]
            threshold, against = listed.threshold, "the roots it lists"
        doc = parse_keys(raw, anchors, threshold, now, check_expiry=False)
    except (BadSignature, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} does not verify: {exc}") from None
    signing = key_id(online_key(secrets).public_key()) if secrets.signing_key.exists() else None
    result = {"path": str(path), "checked_against": against, **_summary(doc, now, signing)}
    if as_json:
        emit_json(result)
        return
    out.print(f"{path}: signatures checked against {against}")
    _print_document(result)

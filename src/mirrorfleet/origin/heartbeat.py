"""`mirrorfleet origin heartbeat`: sign the current stamp again, so an idle fleet
stays provably fresh.

The serial, snapshot and record stay; only `ts` and `expires` move. A mirror picks
the new stamp up with its cheap check (one small GET, no rsync) and the monitor puts
it into the head TXT record, so every verifier sees a stamp that expires in
`stamp_lifetime` seconds. A mirror that stops picking heartbeats up, or a replayed
DNS answer, expires on its own, even while it still carries the newest serial.

It takes the publish lock: a heartbeat never signs over a publish in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mirrorfleet.config import OriginConfig
from mirrorfleet.errors import UserError
from mirrorfleet.origin.publish import ping_all
from mirrorfleet.origin.state import PublishState
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.seal import origin_keys, publish_keys
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import SNAPSHOT_PATH, read_local_snapshot
from mirrorfleet.tree.stamp import STAMP_PATH, read_local_stamp


@dataclass
class HeartbeatResult:
    serial: int
    ts: int
    expires: int
    previous_expires: int
    dry_run: bool = False
    pings: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def heartbeat(config: OriginConfig, ping: bool = True, dry_run: bool = False) -> HeartbeatResult:
    key = load_signing_key(config.signing_key)
    state = PublishState.open(config.state_dir, dry_run=dry_run)  # the publish lock
    try:
        try:
            keys = origin_keys(key, config.keys_document)
            current = read_local_stamp(config.tree, keys)
        except BadSignature as exc:
            raise UserError(
                f"the tree's stamp does not verify with this signing key ({exc}); "
                "run `mirrorfleet origin publish` to sign the tree with it"
            ) from None
        if current is None:
            raise UserError(
                f"{config.tree} has no stamp yet: nothing to keep fresh before the first "
                "`mirrorfleet origin publish`"
            )
        # a new keys document (a rotation, a revocation) travels with the heartbeat
        keys_version = current.keys if dry_run else publish_keys(config.tree, config.keys_document)
        renewed = current.renewed(config.stamp_lifetime, time.time(), keys_version)
        result = HeartbeatResult(
            current.serial, renewed.ts, renewed.expires, current.expires, dry_run
        )
        if read_local_snapshot(config.tree, keys, current.snapshot) is None:
            # a publish died between its snapshot and its stamp: mirrors behind cannot
            # sync until a publish redoes it
            result.warnings.append(
                f"{SNAPSHOT_PATH} is not the one serial {current.serial}'s stamp names: "
                "a publish did not finish; run `mirrorfleet origin publish`"
            )
        if dry_run:
            return result
        atomic_write(config.tree / STAMP_PATH, renewed.sign(key), config.tree)
    finally:
        state.close()
    if ping and config.ping:
        result.pings = ping_all(config, current.serial, event="heartbeat")
    return result

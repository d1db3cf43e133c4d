#!/usr/bin/env bash
# The main job on the local lab: set up, boot the lab, converge it, then show the
# fleet at work: demo content published on the origin, every mirror at the head
# serial, the mirror list read from the DNS secondary, and a pick. Safe to rerun:
# each step leaves what is already there alone.
#
# Arguments go to `mirrorfleet lab up` (e.g. --subnet); name the lab with
# MIRRORFLEET_LAB, which every step below reads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MF=.venv/bin/mirrorfleet
AS_SERVICE="runuser -u mirrorfleet -- mirrorfleet"
WAIT=${MIRRORFLEET_LAB_WAIT:-120}  # seconds each wait below may take at the most

"$MF" lab up "$@"
.venv/bin/pyinfra -y inventories/lab.py deploy.py
"$MF" lab status

# The lab's facts, from its state file: ORIGIN, SECONDARY, MIRRORS, ZONE, KEY, and
# ROOTS: the lab's ACME roots when it has a CA (then every site is HTTPS).
eval "$(.venv/bin/python - <<'PY'
import shlex
from mirrorfleet.lab.inventory import ACME_ROOTS, LAB_HOST_DATA
from mirrorfleet.lab.state import require_state

state = require_state()
hosts = state.hosts
dns = [h for h in hosts if "dns" in h.groups]
secondary = next((h for h in dns if h.data.get("dns_role") == "secondary"), dns[0])
facts = {
    "ORIGIN": next(f"{h.name}={h.address}" for h in hosts if "origin" in h.groups),
    "SECONDARY": secondary.address,
    "MIRRORS": " ".join(f"{h.name}={h.address}" for h in hosts if "mirrors" in h.groups),
    "ZONE": LAB_HOST_DATA["mirror_zone"],
    "KEY": (state.secrets_dir / "origin-signing.pub").read_text().strip(),
    "ROOTS": str(roots) if (roots := state.dir / ACME_ROOTS).exists() else "",
}
for name, value in facts.items():
    print(f"{name}={shlex.quote(value)}")
PY
)"

serial() {  # serial NAME=ADDRESS: the serial a host serves (its signed stamp), or nothing
  local name=${1%=*}.$ZONE address=${1#*=} url
  if [[ -n $ROOTS ]]; then  # by its name over HTTPS, trusting the lab's roots alone
    url=(--cacert "$ROOTS" --resolve "$name:443:$address" "https://$name/.mirror/stamp.json")
  else
    url=("http://$address/.mirror/stamp.json")
  fi
  curl -sf --max-time 5 "${url[@]}" \
    | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["signed"]["serial"])' \
    2>/dev/null || true
}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND every second, for WAIT seconds
  local what=$1 deadline=$((SECONDS + WAIT))
  shift
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "==> gave up after ${WAIT}s waiting for $what" >&2
      return 1
    fi
    sleep 1
  done
}

echo "==> demo content on the origin, published as a signed serial (pings every mirror)"
"$MF" lab exec origin -- $AS_SERVICE demo-content /srv/mirror --projects 20 >/dev/null
"$MF" lab exec origin -- $AS_SERVICE origin publish
HEAD=$(serial "$ORIGIN")
[[ -n $HEAD ]] || { echo "==> the origin serves no stamp" >&2; exit 1; }

all_at_head() {
  local entry
  for entry in $MIRRORS; do
    [[ $(serial "$entry") == "$HEAD" ]] || return 1
  done
}
wait_for "every mirror at serial $HEAD" all_at_head
for entry in $MIRRORS; do
  echo "    ${entry%=*} (${entry#*=}) serves serial $(serial "$entry")"
done

srv() { dig +short @"$SECONDARY" "_pkgmirror._tcp.$ZONE" SRV; }
txt() { dig +short @"$SECONDARY" "$1._meta._pkgmirror.$ZONE" TXT; }
all_listed() {  # the monitor has probed every mirror at the head and the secondary has it
  local entry
  [[ $(srv | wc -l) -eq $(wc -w <<<"$MIRRORS") ]] || return 1
  for entry in $MIRRORS; do
    [[ $(txt "${entry%=*}") == *"\"serial=$HEAD\""* ]] || return 1
  done
}
echo "==> the mirror list in DNS, from the secondary ($SECONDARY): SRV, then TXT"
wait_for "every mirror listed at serial $HEAD in DNS" all_listed
srv
for entry in $MIRRORS; do
  txt "${entry%=*}"
done
"$MF" list --zone "$ZONE" --server "$SECONDARY" --key "$KEY"

echo "==> a client picks a fresh mirror (on the monitor host, where lab names resolve)"
"$MF" lab exec monitor -- mirrorfleet pick --zone "$ZONE" --server "$SECONDARY" --key "$KEY"

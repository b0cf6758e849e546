#!/usr/bin/env bash
# `make demo`: a 3-node local cluster; a memory-heavy job (2 GiB, checksumming its memory round
# after round) migrated n1 -> n2 -> n3 while it runs, its memory following lazily through the
# pagers; the page-fault traffic of each hop; its final checksum against an unmigrated run's;
# the cluster removed.
set -euo pipefail
bin=${1:-build/bin}
programs=$bin/../tests/programs
mib=${FERRY_DEMO_MIB:-2048}
rounds=${FERRY_DEMO_ROUNDS:-24}
ferry() { "$bin/ferry" --cluster demo "$@"; }
reference_out=$(mktemp)
trap 'ferry cluster down >/dev/null 2>&1 || true; rm -f "$reference_out"' EXIT

echo "== ferry cluster up --nodes 3"
ferry cluster down >/dev/null 2>&1 || true
ferry cluster up --nodes 3
echo
echo "== ferry nodes"
ferry nodes
echo
echo "== the same job unmigrated, for reference (in the background)"
"$programs/checksum_heap" "$mib" "$rounds" >"$reference_out" &
reference_pid=$!
echo
echo "== ferry run -d -- checksum_heap $mib $rounds   (fills $mib MiB, then checksums it round after round)"
gpid=$(ferry run -d -- "$programs/checksum_heap" "$mib" "$rounds")
echo "gpid $gpid"
output=$(ferry ps --json | python3 -c "import json,sys; print([p['output'] for p in json.load(sys.stdin) if p['gpid']==$gpid][0])")
until grep -q "round 1 " "$output" 2>/dev/null; do sleep 0.2; done
ferry ps
tail -n 2 "$output"
for to in n2 n3; do
  echo
  echo "== ferry migrate $gpid --to $to --wait"
  ferry migrate "$gpid" --to "$to" --wait
  tail -n 1 "$output"
done
echo
echo "== ferry stat $gpid   (page-fault traffic of each hop)"
ferry stat "$gpid"
echo
echo "== ferry ps"
ferry ps
echo
echo "== ferry wait $gpid"
ferry wait "$gpid"
wait "$reference_pid"
migrated=$(tail -n 1 "$output")
reference=$(tail -n 1 "$reference_out")
echo "migrated:   $migrated"
echo "unmigrated: $reference"
if [ "$migrated" = "$reference" ]; then echo "checksums match"; else echo "CHECKSUMS DIFFER"; exit 1; fi
echo
echo "== ferry cluster down"
ferry cluster down
trap - EXIT
rm -f "$reference_out"

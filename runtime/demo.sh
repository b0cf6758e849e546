#!/usr/bin/env bash
# `make demo`: a 3-node local cluster, its nodes, a few round trips across it, then removed.
# (The migration demo replaces the middle part once migration exists.)
set -euo pipefail
bin=${1:-build/bin}
ferry() { "$bin/ferry" --cluster demo "$@"; }
trap 'ferry cluster down >/dev/null 2>&1 || true' EXIT

echo "== ferry cluster up --nodes 3"
ferry cluster down >/dev/null 2>&1 || true
ferry cluster up --nodes 3
echo
echo "== ferry nodes"
ferry nodes
echo
echo "== round trips across the cluster (DIPC over libfabric tcp;ofi_rxm)"
ferry --node n1 ping agent@n2 --count 100
ferry --node n2 ping pager@n3 --count 100 --size 4096
ferry --node n3 ping master --count 100
echo
echo "== ferry cluster down"
ferry cluster down
trap - EXIT

#!/usr/bin/env bash
# Installs the Debian packages Ferry needs to build, test and run, if any are missing.
# Idempotent and quiet when everything is present; needs root (as README's commands do).
#   bash scripts/install-deps.sh         what `make`, `make test` and `make demo` need
#   bash scripts/install-deps.sh bench   and what `make bench` needs too (gnuplot for the plots)
set -euo pipefail
packages=(
  g++ cmake make pkg-config
  libfabric-dev libfabric-bin liburing-dev capnproto libcapnp-dev libtbb-dev
  libgtest-dev libgmock-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libssl-dev
  iproute2 procps python3-minimal python3 xz-utils coreutils
  nodejs openjdk-17-jdk-headless
)
if [ "${1:-}" = bench ]; then
  packages+=(gnuplot-nox fonts-dejavu-core)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

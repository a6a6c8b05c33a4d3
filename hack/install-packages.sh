#!/usr/bin/env bash
# Installs the Debian packages Tether's tests and local cluster need, if they
# are missing. Safe to run again; does nothing when all are present.
set -euo pipefail

# One package per line, each with the reason it is needed.
packages=(
	redis-server # the Redis event-log backend's tests start their own server on loopback
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	echo "Debian packages: all present (${packages[*]:-none needed})"
	exit 0
fi
echo "Debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

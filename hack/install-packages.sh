#!/usr/bin/env bash
# Installs the Debian packages Tether's tests and local cluster need, if they
# are missing. Safe to run again; does nothing when all are present.
set -euo pipefail

# One package per line, each with the reason it is needed.
packages=(
	redis-server # the Redis event-log backend's tests start their own server on loopback
	# The local cluster (hack/cluster), all run inside its own network namespace:
	containerd                  # the container runtime the kubelet drives
	runc                        # the OCI runtime containerd starts containers with
	containernetworking-plugins # bridge, host-local and loopback CNI plugins for pod networking
	iptables                    # kube-proxy's Service rules and CNI's masquerading
	conntrack                   # kube-proxy clears stale flows with it
	nginx-light                 # the Ingress in front of the gateway Service in the end-to-end tests
	openssl                     # the cluster's certificates
	jq                          # reading objects in the cluster scripts
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

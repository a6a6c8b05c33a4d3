# Pinned tool versions and the versioned cache directory they are built into.
# Sourced by install.sh, the Makefile and the test scripts.
# Kubernetes, etcd and controller-gen versions are pinned in go.mod here;
# helm and golangci-lint are built with their own go.mod at these versions.
KUBERNETES_VERSION=v1.36.3
HELM_VERSION=v4.3.1
GOLANGCI_LINT_VERSION=v2.15.0
ALL_TOOLS=(etcd kube-apiserver kubectl controller-gen kubelet kube-controller-manager kube-scheduler kube-proxy helm golangci-lint)

# The cache key changes whenever a pinned version or the build recipe changes,
# so a stale binary is never reused and old caches can simply be deleted.
tether_tools_bin() {
	local dir key
	dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	key=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/versions.sh" "$dir/install.sh" | sha256sum | cut -c1-12)
	echo "${TETHER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether-tools}/$KUBERNETES_VERSION-$key/bin"
}

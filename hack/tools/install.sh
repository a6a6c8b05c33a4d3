#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries, etcd, controller-gen, helm and
# golangci-lint into a versioned cache outside the repository, once per
# machine. Idempotent: what is already built is skipped. Prints the bin
# directory on its last line of stdout (progress goes to stderr).
#
#   hack/tools/install.sh [tool ...]     # default: all tools
#
# TETHER_TOOLS_CACHE overrides the cache root (default ~/.cache/tether-tools).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/tools/versions.sh
source "$here/versions.sh"

bin=$(tether_tools_bin)
mkdir -p "$bin"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

k8s_ldflags() {
	local pkg flags=""
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
		flags+=" -X $pkg.gitMajor=$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f1)"
		flags+=" -X $pkg.gitMinor=$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f2)"
		flags+=" -X $pkg.gitTreeState=clean"
	done
	echo "-s -w$flags"
}

# build NAME PACKAGE [LDFLAGS]: go build inside the hack/tools module.
build() {
	local name=$1 pkg=$2 ldflags=${3:-"-s -w"}
	if [[ -x "$bin/$name" ]]; then
		log "$name: cached"
		return
	fi
	log "$name: building $pkg"
	local start=$SECONDS
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	log "$name: built in $((SECONDS - start))s"
}

# install NAME MODULE_PACKAGE@VERSION: tools whose own go.mod must be used.
install() {
	local name=$1 spec=$2
	if [[ -x "$bin/$name" ]]; then
		log "$name: cached"
		return
	fi
	log "$name: installing $spec"
	local start=$SECONDS
	local tmp
	tmp=$(mktemp -d)
	GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$spec"
	mv "$tmp/$(basename "${spec%@*}")" "$bin/$name"
	rmdir "$tmp"
	log "$name: installed in $((SECONDS - start))s"
}

tool() {
	case $1 in
	etcd) build etcd go.etcd.io/etcd/server/v3 ;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet | kubectl)
		build "$1" "k8s.io/kubernetes/cmd/$1" "$(k8s_ldflags)" ;;
	controller-gen) build controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen ;;
	helm) install helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" ;;
	golangci-lint) install golangci-lint "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION" ;;
	*) log "unknown tool $1 (known: ${ALL_TOOLS[*]})"; return 2 ;;
	esac
}

start=$SECONDS
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=("${ALL_TOOLS[@]}")
log "cache $bin"
for t in "${tools[@]}"; do tool "$t"; done
log "done in $((SECONDS - start))s"
echo "$bin"

# Tether on the local cluster, for make e2e and make chaos (sourced after
# lib.sh).

# prepare_suite NAME PACKAGE NODES: builds the images and the test binary
# $STATE/NAME.test of PACKAGE, brings the cluster up with NODES nodes (or
# uses the running one) and points kubectl and helm at it. The cluster is
# torn down when the calling script exits, unless KEEP_CLUSTER=1.
prepare_suite() {
	local name=$1 pkg=$2 nodes=$3 tag
	tag=$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' "$ROOT/charts/tether/Chart.yaml")
	if [[ "${KEEP_CLUSTER:-}" != 1 ]]; then
		trap '"$ROOT/hack/cluster/cluster.sh" down' EXIT
	fi
	step "images, FROM scratch"
	go run ./hack/images --tag "$tag" --out _output/images
	step "$name: building the tests"
	mkdir -p "$STATE"
	go test -c -o "$STATE/$name.test" "$pkg"
	"$ROOT/hack/cluster/cluster.sh" up --nodes "$nodes"
	export KUBECONFIG=$KUBECONFIG_ADMIN HELM_CACHE_HOME=$STATE/helm/cache HELM_CONFIG_HOME=$STATE/helm/config HELM_DATA_HOME=$STATE/helm/data
}

# install_tether NAMESPACE...: helm installs (or upgrades) the chart with
# the given agent namespaces, the manager and the gateway on the first node
# with the API server and the Ingress (the second node is the worker node
# the tests lose), and points nginx at the gateway.
install_tether() {
	local namespaces ns
	namespaces=$(IFS=,; echo "$*")
	for ns in "$@"; do
		kubectl_ns get namespace "$ns" >/dev/null 2>&1 || kubectl_ns create namespace "$ns" >/dev/null
	done
	in_ns "$BIN/helm" upgrade --install tether "$ROOT/charts/tether" -n tether-system --create-namespace \
		--set image.pullPolicy=Never --set "runtime.agentNamespaces={$namespaces}" \
		--set "manager.nodeSelector.kubernetes\\.io/hostname=$NODE_NAME" --set "gateway.nodeSelector.kubernetes\\.io/hostname=$NODE_NAME" \
		--wait --timeout 180s >/dev/null
	"$ROOT/hack/cluster/cluster.sh" ingress tether-system tether-gateway
	# On a kept cluster, worker pods of an earlier run hold tokens of the
	# ServiceAccount the last helm uninstall deleted: replace them.
	kubectl_ns delete pods -A -l tether.dev/agent --wait=false >/dev/null
}

# test_env: the environment a test binary run inside the namespace reads
# (internal/testing/localcluster).
test_env() {
	echo TETHER_E2E_KUBECONFIG="$KUBECONFIG_ADMIN" TETHER_E2E_BIN="$BIN" TETHER_E2E_ROOT="$ROOT" \
		TETHER_E2E_CONTAINERD="$CONTAINERD_SOCK" TETHER_E2E_CONTAINERD2="$CONTAINERD2_SOCK" \
		TETHER_E2E_AUDIT="$LOGS" TETHER_E2E_PIDS="$PIDS"
}

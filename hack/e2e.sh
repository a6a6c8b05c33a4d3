#!/usr/bin/env bash
# make e2e: Tether on the real local cluster. Brings the cluster up, installs
# the chart with helm, runs test/e2e inside the cluster's network namespace,
# checks that helm uninstall leaves nothing behind but what is kept on
# purpose, and tears the cluster down (KEEP_CLUSTER=1 keeps it).
# E2E_RUNS sets the measured runs of the failover scenarios (1; docs use 20);
# E2E_RUN, a regular expression, picks the tests to run (all by default);
# E2E_NODES, the cluster's nodes (2: the node-loss test needs the second).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source hack/cluster/lib.sh
source hack/cluster/tether.sh
prepare_suite e2e ./test/e2e "${E2E_NODES:-2}"
step "helm install tether charts/tether"
# Two agent namespaces: default, where the tests' Agents run, and team-b, a
# second tenant whose credentials must get nothing of default's.
install_tether default team-b
# The demo's Agent with a 4 s Lease: the frozen-owner tests measure against it.
sed 's/leaseDurationSeconds: 10/leaseDurationSeconds: 4/' hack/demo/approvals.yaml | kubectl_ns apply --server-side -f - >/dev/null
kubectl_ns wait --for=jsonpath='{.status.readyReplicas}'=2 agent/approvals --timeout=120s >/dev/null

step "end-to-end tests (inside the namespace)"
set +e
# shellcheck disable=SC2046 # test_env prints NAME=VALUE words
in_ns env $(test_env) TETHER_E2E_REPORT="${TETHER_E2E_REPORT:-}" \
	"$STATE/e2e.test" -test.v -test.timeout 40m -test.run "${E2E_RUN:-.}" -e2e.runs "${E2E_RUNS:-1}" 2>&1 | tee "$LOGS/e2e.log"
status=${PIPESTATUS[0]}
set -e
[[ $status -eq 0 ]] || { echo "end-to-end tests failed (log: $LOGS/e2e.log; the cluster's logs are beside it)" >&2; exit 1; }

step "helm uninstall leaves nothing but the kept Secret and the CRDs"
in_ns "$BIN/helm" uninstall tether -n tether-system --wait >/dev/null
left=$(kubectl_ns get deployments,services,ingresses,poddisruptionbudgets,networkpolicies,serviceaccounts,secrets,roles,rolebindings,clusterroles,clusterrolebindings \
	-A -l app.kubernetes.io/instance=tether -o name)
if [[ "$left" != "secret/tether-gateway-auth" ]]; then
	printf 'left behind after helm uninstall:\n%s\n' "$left" >&2
	exit 1
fi
kubectl_ns get crd conversations.tether.dev agents.tether.dev -o name
echo "    kept: secret/tether-gateway-auth (helm.sh/resource-policy: keep) and the CRDs (helm never deletes crds/)"
step "end-to-end tests passed"

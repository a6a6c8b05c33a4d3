#!/usr/bin/env bash
# make demo: from a fresh machine to a conversation that survives the loss
# of its pod, narrated. Builds what is missing, brings the local cluster up,
# installs Tether with helm, runs the approval Agent, and runs the demo
# client through the Ingress. The cluster stays up afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source hack/cluster/lib.sh
TAG=$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/tether/Chart.yaml)

step "tools (built once per machine into $(dirname "$BIN"); about 25 min the first time)"
hack/tools/install.sh
step "images, FROM scratch"
go run ./hack/images --tag "$TAG" --out _output/images
step "the local cluster"
hack/cluster/cluster.sh up
export KUBECONFIG=$KUBECONFIG_ADMIN HELM_CACHE_HOME=$STATE/helm/cache HELM_CONFIG_HOME=$STATE/helm/config HELM_DATA_HOME=$STATE/helm/data
step "helm upgrade --install tether charts/tether"
in_ns "$BIN/helm" upgrade --install tether charts/tether -n tether-system --create-namespace \
	--set image.pullPolicy=Never --wait --timeout 180s >/dev/null
kubectl_ns -n tether-system get pods
step "the Ingress (nginx in the namespace, configured from the chart's Ingress)"
hack/cluster/cluster.sh ingress tether-system tether-gateway
step "the approval Agent (kubectl apply)"
kubectl_ns apply --server-side -f hack/demo/approvals.yaml
kubectl_ns wait --for=jsonpath='{.status.readyReplicas}'=2 agent/approvals --timeout=120s >/dev/null
kubectl_ns get agents
name=refund-$(date +%H%M%S)
step "a Conversation, $name, asking for a refund"
kubectl_ns create -f - <<YAML
apiVersion: tether.dev/v1alpha1
kind: Conversation
metadata: {name: $name, namespace: default}
spec:
  agentRef: {name: approvals}
  subjects: [alice]
  initialInput: refund order 1234
YAML
kubectl_ns wait --for=jsonpath='{.status.phase}'=AwaitingInput "conversation/$name" --timeout=60s >/dev/null
step "the demo client"
go build -o "$STATE/demo" ./hack/demo
in_ns "$STATE/demo" --kubectl "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --conversation "$name"
cat <<TXT

The cluster stays up. Look around with
  hack/cluster/cluster.sh kubectl get agents,conversations,pods -A
  hack/cluster/cluster.sh kubectl describe conversation $name
and take it all down with
  make demo-down
TXT

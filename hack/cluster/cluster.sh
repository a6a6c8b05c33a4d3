#!/usr/bin/env bash
# A real single-node Kubernetes cluster for Tether's demo and end-to-end
# tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet and kube-proxy from hack/tools, containerd and runc from Debian,
# all inside a network namespace of its own with no link to the host's
# network.
#
#   hack/cluster/cluster.sh up [--nodes 2]   bring it up (idempotent), import the images;
#                                            --nodes 2 adds a second node (node2.sh)
#   hack/cluster/cluster.sh down     tear it down (both nodes); safe to run twice
#   hack/cluster/cluster.sh partition node2 | heal node2   cut or restore the second node's link
#   hack/cluster/cluster.sh restart kube-apiserver   kill the API server and start it again
#   hack/cluster/cluster.sh status   what runs
#   hack/cluster/cluster.sh ingress NAMESPACE NAME   nginx in front of an Ingress's Service
#   hack/cluster/cluster.sh kubectl ARGS...   kubectl inside the namespace
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
source "$HERE/pki.sh"
source "$HERE/configs.sh"
source "$HERE/ingress.sh"
source "$HERE/node2.sh"
IMAGE_TAG=${IMAGE_TAG:-$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' "$ROOT/charts/tether/Chart.yaml")}
IMAGES_DIR=${IMAGES_DIR:-$ROOT/_output/images}

make_netns() {
	if [[ ! -e "/run/netns/$NETNS" ]]; then
		ip netns add "$NETNS"
	fi
	in_ns ip link set lo up
	if ! in_ns ip link show k8s0 >/dev/null 2>&1; then
		# A bridge with no ports: the node's address and the default route,
		# and nothing that leads out of the namespace.
		in_ns ip link add k8s0 type bridge
		in_ns ip addr add "$NODE_IP/24" dev k8s0
		in_ns ip link set k8s0 up
		in_ns ip route add default dev k8s0
	fi
	in_ns sysctl -qw net.ipv4.ip_forward=1
	# Bridged pod traffic must go through iptables for Services to work.
	modprobe br_netfilter 2>/dev/null || true
	in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

# import_images SOCK: the images, into the containerd at SOCK.
import_images() {
	local tar
	for tar in "$IMAGES_DIR"/*.tar; do
		ctr --address "$1" -n k8s.io images import --no-unpack=false "$tar" >/dev/null
		echo "    imported $(basename "$tar" .tar)"
	done
}

# kill_tasks NAME SOCK: kills every container of the containerd NAME at SOCK,
# so their shims exit with them.
kill_tasks() {
	local task
	running "$1" || return 0
	for task in $(ctr --address "$2" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr --address "$2" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
	done
	sleep 1
	for task in $(ctr --address "$2" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr --address "$2" -n k8s.io tasks delete -f "$task" >/dev/null 2>&1 || true
	done
}

# start_apiserver starts kube-apiserver (its audit log records who wrote
# Tether's objects: see write_audit_policy).
start_apiserver() {
	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
		--bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
		--service-cluster-ip-range "$SERVICE_CIDR" --client-ca-file "$PKI/ca.crt" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
		--audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" --audit-log-format json \
		--audit-log-maxsize 1024 --audit-log-maxbackup 4
}

# restart kube-apiserver: kills it (as a crash would) and starts it again.
restart() {
	case "${1:-}" in
	kube-apiserver)
		stop kube-apiserver 0
		start_apiserver
		# Ready but for the bootstrap of the default RBAC roles, which are
		# in etcd since the first start: that hook reconciles ~150 objects
		# one request at a time through the server's own client, and with
		# every client of a busy cluster coming back at once it held
		# /readyz for 20-50 s after the server was serving again.
		wait_for "the API server" 60 kubectl_ns get --raw '/readyz?exclude=poststarthook/rbac/bootstrap-roles'
		;;
	*) echo "usage: restart kube-apiserver" >&2; exit 2 ;;
	esac
}

up() {
	[[ $EUID -eq 0 ]] || { echo "the local cluster needs root" >&2; exit 1; }
	local nodes=1
	if [[ "${1:-}" == --nodes ]]; then nodes=${2:-}; fi
	[[ "$nodes" == 1 || "$nodes" == 2 ]] || { echo "up: --nodes is 1 or 2" >&2; exit 2; }
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
		[[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b: run make tools" >&2; exit 1; }
	done
	"$ROOT/hack/install-packages.sh"
	mkdir -p "$STATE" "$LOGS" "$PIDS" "$RUN"
	step "network namespace $NETNS (node $NODE_IP, no link to the host)"
	make_netns
	step "certificates and kubeconfigs"
	make_pki
	write_configs
	write_audit_policy

	step "etcd"
	start etcd "$BIN/etcd" --data-dir "$STATE/etcd" --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
		--unsafe-no-fsync=false --quota-backend-bytes=8589934592
	wait_for etcd 30 in_ns curl -sf http://127.0.0.1:2379/health
	start etcd-keeper "$ROOT/hack/cluster/etcd-keeper.sh"

	step "kube-apiserver"
	start_apiserver
	wait_for "the API server" 60 kubectl_ns get --raw /readyz

	step "kube-controller-manager and kube-scheduler"
	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" --use-service-account-credentials \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--leader-elect=false --bind-address 127.0.0.1
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--leader-elect=false --bind-address 127.0.0.1

	step "containerd"
	start containerd containerd --config "$STATE/containerd/config.toml"
	wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version

	step "images (FROM scratch, imported into containerd)"
	if [[ ! -f "$IMAGES_DIR/pause.tar" ]]; then
		(cd "$ROOT" && go run ./hack/images --tag "$IMAGE_TAG" --out "$IMAGES_DIR")
	fi
	import_images "$CONTAINERD_SOCK"

	step "kubelet and kube-proxy"
	start kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
		--root-dir "$STATE/kubelet/root" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
	start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
	wait_for "the node to be Ready" 90 kubectl_ns wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
	wait_for "the default ServiceAccount" 60 kubectl_ns -n default get serviceaccount default
	if [[ "$nodes" == 2 ]]; then node2_up; fi
	step "cluster up: hack/cluster/cluster.sh kubectl get nodes"
}

down() {
	[[ $EUID -eq 0 ]] || { echo "the local cluster needs root" >&2; exit 1; }
	step "tearing the local cluster down"
	# Pods first, through containerd, so their shims exit with them.
	stop nginx
	node2_down
	stop kubelet
	kill_tasks containerd "$CONTAINERD_SOCK"
	stop kube-proxy
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver 70 # it takes about a minute with clients connected
	stop etcd-keeper
	stop etcd
	stop containerd 20
	step "mounts, namespaces and state"
	# Everything mounted under the cluster's directories, deepest first.
	local mounts
	mounts=$(awk -v a="$STATE" -v b="$RUN" 'index($2, a) == 1 || index($2, b) == 1 || index($2, "/run/netns/cni-") == 1 {print $2}' /proc/self/mounts | sort -r)
	for m in $mounts; do
		umount -l "$m" 2>/dev/null || true
	done
	for ns in /run/netns/cni-*; do
		if [[ -e "$ns" ]]; then ip netns delete "$(basename "$ns")" 2>/dev/null || true; fi
	done
	# Deleting the namespaces deletes their bridges, veths and iptables rules.
	node2_cleanup
	if [[ -e "/run/netns/$NETNS" ]]; then ip netns delete "$NETNS"; fi
	# What containerd, the CNI plugins and the kubelet leave outside the
	# cluster's own directories.
	rm -rf "$RUN" "$STATE" /run/containerd /var/lib/cni /var/log/pods /var/log/containers
	# ip netns add mounts /run/netns on itself; undo it once it is empty.
	if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]] && grep -q " /run/netns " /proc/self/mounts; then
		umount /run/netns 2>/dev/null || true
	fi
	step "down"
}

status() {
	for c in etcd etcd-keeper kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy nginx containerd2 kubelet2 kube-proxy2; do
		if running "$c"; then echo "$c: running (pid $(cat "$PIDS/$c.pid"))"; else echo "$c: not running"; fi
	done
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
status) status ;;
kubectl) shift; kubectl_ns "$@" ;;
ingress) ingress "$2" "$3" ;;
partition) partition "${2:-}" ;;
heal) heal "${2:-}" ;;
restart) restart "${2:-}" ;;
*) echo "usage: $0 up [--nodes 2]|down|status|partition node2|heal node2|restart kube-apiserver|kubectl ARGS..." >&2; exit 2 ;;
esac

# Shared settings of the local cluster (sourced by cluster.sh).
#
# The whole cluster runs inside the network namespace $NETNS, which has no
# link to the host's network: only lo and a bridge with no ports, holding the
# node's address, with the default route into it. Pod and Service addresses
# never leave it.
NETNS=tether
NODE_NAME=tether-node
NODE_IP=10.200.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
STATE=${TETHER_CLUSTER_STATE:-/var/lib/tether-cluster}
# The second node (up --nodes 2): a namespace of its own, linked to the first
# by a veth pair whose first end is a port of the first node's bridge, and
# nothing else. Its own kubelet, containerd, kube-proxy and pod subnet.
NETNS2=tether-node2
NODE2_NAME=tether-node2
NODE2_IP=10.200.0.2
POD2_CIDR=10.244.1.0/24
NODE2_LINK=tn2-link # the first node's end of the link (cut for a partition)
CGROUP2_ROOT=/tether-node2
RUN=/run/tether-cluster
CONTAINERD_SOCK=$RUN/containerd/containerd.sock
STATE2=$STATE/node2
RUN2=$RUN/node2
CONTAINERD2_SOCK=$RUN2/containerd/containerd.sock
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
KUBE_PROXY_KUBECONFIG=$STATE/kube-proxy.kubeconfig

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../tools/versions.sh
source "$ROOT/hack/tools/versions.sh"
BIN=$(tether_tools_bin)

T0=$SECONDS
step() { printf '==> [%s +%ss] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - T0))" "$*"; }

# in_ns runs a command inside the cluster's network namespace (nsenter, not
# ip netns exec, so mounts are shared with the host's mount namespace).
in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# start NAME CMD...: runs a component in the namespace in the background,
# logging to $LOGS/NAME.log, its PID in $PIDS/NAME.pid. Idempotent.
start() { start_in "$NETNS" "$@"; }

# start_in NETNS NAME CMD...: start, in the network namespace NETNS.
start_in() {
	local netns=$1 name=$2
	shift 2
	if running "$name"; then
		echo "    $name already running (pid $(cat "$PIDS/$name.pid"))"
		return
	fi
	setsid nsenter --net="/run/netns/$netns" -- "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
	echo "    $name started (pid $!)"
}

running() { [[ -f "$PIDS/$1.pid" ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# stop NAME [WAIT]: SIGTERM by pidfile, SIGKILL after WAIT seconds (10).
stop() {
	local name=$1 wait=${2:-10} pid
	[[ -f "$PIDS/$name.pid" ]] || return 0
	pid=$(cat "$PIDS/$name.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq $((wait * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "    $name did not stop in ${wait}s: SIGKILL"
			kill -9 "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
		echo "    $name stopped"
	fi
	rm -f "$PIDS/$name.pid"
}

# wait_for WHAT SECONDS CMD...: polls CMD every 0.2 s.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for _ in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "timed out after ${secs}s waiting for $what" >&2
	return 1
}

kubectl_ns() { in_ns "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

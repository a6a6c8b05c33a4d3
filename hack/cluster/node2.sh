# The local cluster's second node (sourced by cluster.sh): up --nodes 2.
#
# It runs in a network namespace of its own ($NETNS2), linked to the first
# node's namespace by one veth pair: the first end ($NODE2_LINK) is a port of
# the first node's bridge, the second holds $NODE2_IP. Routes send each
# node's pod subnet across the link; the second node's default route leads
# to the first node, which has no link out. Nothing reaches the host's
# network. Its kubelet keeps its pods under the cgroup $CGROUP2_ROOT and
# their logs under its own directory, so the two kubelets never touch each
# other's pods.

make_node2_netns() {
	if [[ ! -e "/run/netns/$NETNS2" ]]; then
		ip netns add "$NETNS2"
	fi
	in_ns2 ip link set lo up
	if ! in_ns ip link show "$NODE2_LINK" >/dev/null 2>&1; then
		in_ns ip link add "$NODE2_LINK" type veth peer name eth0 netns "$NETNS2"
		in_ns ip link set "$NODE2_LINK" master k8s0
		in_ns ip link set "$NODE2_LINK" up
		in_ns2 ip addr add "$NODE2_IP/24" dev eth0
		in_ns2 ip link set eth0 up
		in_ns2 ip route add default via "$NODE_IP" dev eth0
	fi
	in_ns ip route replace "$POD2_CIDR" via "$NODE2_IP" dev k8s0
	in_ns2 sysctl -qw net.ipv4.ip_forward=1
	in_ns2 sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

# node2_cgroups: the cgroup the second kubelet keeps its pods under, in
# every controller (the kubelet refuses a cgroup root that does not exist).
node2_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/; do
		[[ -e "$d/cgroup.procs" && ! -e "$d/cgroup.controllers" ]] || continue # v1 hierarchies only
		mkdir -p "$d$CGROUP2_ROOT"
		if [[ -e "$d/cpuset.cpus" && -z "$(cat "$d$CGROUP2_ROOT/cpuset.cpus")" ]]; then
			cat "$d/cpuset.cpus" >"$d$CGROUP2_ROOT/cpuset.cpus"
			cat "$d/cpuset.mems" >"$d$CGROUP2_ROOT/cpuset.mems"
		fi
	done
}

node2_up() {
	step "second node: namespace $NETNS2 (node $NODE2_IP, linked to the first node only)"
	make_node2_netns
	node2_cgroups
	cert kubelet2 "system:node:$NODE2_NAME" system:nodes "IP:$NODE2_IP,DNS:$NODE2_NAME"
	kubeconfig kubelet2 kubelet2
	mkdir -p "$STATE2/pod-logs"
	write_node_configs "$STATE2" "$RUN2" "$CONTAINERD2_SOCK" "$NODE2_NAME" "$NODE2_IP" "$POD2_CIDR" tether-node2 kubelet2 \
		"cgroupRoot: $CGROUP2_ROOT
podLogsDir: $STATE2/pod-logs"
	start_in "$NETNS2" containerd2 containerd --config "$STATE2/containerd/config.toml"
	wait_for "the second containerd" 30 ctr --address "$CONTAINERD2_SOCK" version
	import_images "$CONTAINERD2_SOCK"
	start_in "$NETNS2" kubelet2 "$BIN/kubelet" --config "$STATE2/kubelet/config.yaml" --kubeconfig "$STATE/kubelet2.kubeconfig" \
		--root-dir "$STATE2/kubelet/root" --hostname-override "$NODE2_NAME" --node-ip "$NODE2_IP"
	start_in "$NETNS2" kube-proxy2 "$BIN/kube-proxy" --config "$STATE2/kube-proxy.yaml"
	wait_for "the second node to be Ready" 90 kubectl_ns wait --for=condition=Ready "node/$NODE2_NAME" --timeout=1s
}

# node2_down: stops the second node's components and kills its pods.
node2_down() {
	stop kubelet2
	kill_tasks containerd2 "$CONTAINERD2_SOCK"
	stop kube-proxy2
	stop containerd2 20
}

# node2_cleanup: what is left of the second node once everything stopped:
# its namespace (and with it the link) and its cgroups.
node2_cleanup() {
	if [[ -e "/run/netns/$NETNS2" ]]; then ip netns delete "$NETNS2"; fi
	local d
	for d in /sys/fs/cgroup/*/; do
		[[ -d "$d${CGROUP2_ROOT#/}" ]] || continue
		find "$d${CGROUP2_ROOT#/}" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
}

# partition node2 | heal node2: cut the second node's only link, or restore
# it. Its processes go on running; they cannot reach the first node, the API
# server or any pod there.
partition() {
	[[ "${1:-}" == node2 ]] || { echo "usage: partition node2" >&2; exit 2; }
	in_ns ip link set "$NODE2_LINK" down
}
heal() {
	[[ "${1:-}" == node2 ]] || { echo "usage: heal node2" >&2; exit 2; }
	in_ns ip link set "$NODE2_LINK" up
	in_ns ip route replace "$POD2_CIDR" via "$NODE2_IP" dev k8s0
}

in_ns2() { nsenter --net="/run/netns/$NETNS2" -- "$@"; }

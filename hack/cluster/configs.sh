# Configuration files of the local cluster's node (sourced by cluster.sh).

# put FILE: writes standard input to FILE only if it differs, so a running
# component that watches its configuration (kube-proxy exits when it
# changes) is left alone by a second "up".
put() {
	local tmp
	tmp=$(mktemp)
	cat >"$tmp"
	if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# write_configs: the first node's configuration (and etcd's directory).
write_configs() {
	mkdir -p "$STATE/etcd"
	write_node_configs "$STATE" "$RUN" "$CONTAINERD_SOCK" "$NODE_NAME" "$NODE_IP" "$POD_CIDR" tether kubelet ""
}

# write_node_configs STATE RUN SOCK NODE IP POD_CIDR NETWORK CERT EXTRA: a
# node's containerd, CNI, kubelet and kube-proxy configuration under STATE;
# EXTRA is more of the kubelet's configuration (YAML lines).
write_node_configs() {
	local STATE=$1 RUN=$2 CONTAINERD_SOCK=$3 NODE_NAME=$4 NODE_IP=$5 POD_CIDR=$6 network=$7 cert=$8 extra=$9
	mkdir -p "$STATE/containerd" "$RUN/containerd" "$STATE/cni/net.d" "$STATE/kubelet"

	# containerd: its own root, state and socket; runc may not lower
	# oom_score_adj here (no CAP_SYS_RESOURCE), hence restrict_oom_score_adj;
	# the sandbox image is the locally built pause image.
	put "$STATE/containerd/config.toml" <<CFG
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/tether-pause:$IMAGE_TAG"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
CFG

	# Pods: a bridge inside the namespace, addresses from host-local.
	put "$STATE/cni/net.d/10-tether.conflist" <<CFG
{
  "cniVersion": "0.4.0",
  "name": "$network",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CFG

	put "$STATE/kubelet/config.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/$cert.crt
tlsPrivateKeyFile: $PKI/$cert.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podCIDR: $POD_CIDR
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
# A container that exits is restarted within 5 s, however often it did
# before (the default backoff doubles to 5 minutes): the fault tests kill
# the same processes again and again, and a Redis killed five times in ten
# minutes stayed down for 82 s, which measured the kubelet, not Tether.
crashLoopBackOff: {maxContainerRestartPeriod: 5s}
$extra
CFG

	put "$STATE/kube-proxy.yaml" <<CFG
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBE_PROXY_KUBECONFIG}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $NODE_NAME
conntrack: {maxPerCore: 0}
CFG
}

# write_audit_policy: what the API server's audit log keeps, so a test can
# tell from outside Tether who wrote what, and whether the write was
# accepted: every write of a Conversation's status with its objects (who
# was given the conversation, with which epoch), and who wrote each event
# log object and Lease. Nothing else. Each request's arrival is logged too
# (the log backend blocks on it before the request is served): a write the
# API server was killed while serving has its arrival and no answer, and
# may have been applied.
write_audit_policy() {
	put "$STATE/audit-policy.yaml" <<CFG
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted]
omitManagedFields: true
rules:
  - level: RequestResponse
    verbs: [create, update, patch]
    resources: [{group: tether.dev, resources: [conversations/status]}]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
    resources:
      - {group: tether.dev, resources: [conversationlogs, conversationlogchunks]}
      - {group: coordination.k8s.io, resources: [leases]}
  - level: None
CFG
}

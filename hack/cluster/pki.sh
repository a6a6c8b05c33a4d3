# Certificates of the local cluster, made with openssl (sourced by cluster.sh).

# cert NAME CN O [SANS]: a key and a certificate signed by the cluster CA.
cert() {
	local name=$1 cn=$2 org=$3 sans=${4:-}
	[[ -f "$PKI/$name.crt" ]] && return
	local ext="$PKI/$name.ext"
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=serverAuth,clientAuth"
		[[ -n "$sans" ]] && echo "subjectAltName=$sans"
	} >"$ext"
	local subj="/CN=$cn"
	[[ -n "$org" ]] && subj="/O=$org/CN=$cn"
	openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig NAME CERT: a kubeconfig for the client certificate CERT.
kubeconfig() {
	local file="$STATE/$1.kubeconfig" cert=$2
	[[ -f "$file" ]] && return
	cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: tether
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: tether
  context: {cluster: tether, user: $1}
current-context: tether
KC
	chmod 600 "$file"
}

make_pki() {
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	if [[ ! -f "$PKI/ca.crt" ]]; then
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=tether-local-ca" \
			-days 365 -out "$PKI/ca.crt" 2>/dev/null
	fi
	cert apiserver kube-apiserver "" \
		"IP:$NODE_IP,IP:127.0.0.1,IP:$API_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert admin tether-admin system:masters
	cert controller-manager system:kube-controller-manager ""
	cert scheduler system:kube-scheduler ""
	cert kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
	cert kube-proxy system:kube-proxy ""
	if [[ ! -f "$PKI/sa.key" ]]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	fi
	kubeconfig admin admin
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	kubeconfig kubelet kubelet
	kubeconfig kube-proxy kube-proxy
}

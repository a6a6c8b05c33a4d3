//go:build tools

// Package tools pins the Kubernetes binaries, etcd and code generators that
// Tether's tests and local cluster are built from. It is a module of its own so
// that k8s.io/kubernetes and its replace directives never reach the product's
// go.mod. hack/tools/install.sh builds these packages into a versioned cache.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)

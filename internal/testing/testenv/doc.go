// Package testenv starts a real control plane (etcd and kube-apiserver built
// by hack/tools) for integration tests, with Tether's CRDs installed, and
// finds the other pinned tools (kubectl) the tests drive.
package testenv

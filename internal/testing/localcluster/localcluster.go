// Package localcluster is how tests that run inside the local cluster's
// network namespace (make e2e, make chaos) reach it: its pinned tools and
// kubeconfig, the nodes' containerds, the scripts that change it, and
// tokens the gateway accepts.
package localcluster

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Cluster is the local cluster, as the scripts that run the tests describe
// it in the environment (TETHER_E2E_*).
type Cluster struct {
	Bin, Kubeconfig, Root string
	// Containerds are the sockets of the nodes' containerds.
	Containerds []string
	// Audit is a glob of the API server's audit log files (TETHER_E2E_AUDIT
	// names their directory).
	Audit string
}

// FromEnv is the cluster the environment describes; ok is false outside
// it (the tests then skip).
func FromEnv() (c *Cluster, ok bool) {
	kc := os.Getenv("TETHER_E2E_KUBECONFIG")
	if kc == "" {
		return nil, false
	}
	return &Cluster{
		Bin: os.Getenv("TETHER_E2E_BIN"), Kubeconfig: kc, Root: os.Getenv("TETHER_E2E_ROOT"),
		Containerds: []string{os.Getenv("TETHER_E2E_CONTAINERD"), os.Getenv("TETHER_E2E_CONTAINERD2")},
		Audit:       filepath.Join(os.Getenv("TETHER_E2E_AUDIT"), "audit*.log"),
	}, true
}

// Run runs one of the pinned tools (kubectl, helm) against the cluster.
func (c *Cluster) Run(tool string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.Bin, tool), args...) //nolint:gosec,noctx // the pinned tools
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Apply applies YAML with a server-side apply.
func (c *Cluster) Apply(yaml string) error {
	cmd := exec.Command(filepath.Join(c.Bin, "kubectl"), "apply", "--server-side", "--force-conflicts", "-f", "-") //nolint:gosec,noctx // the pinned kubectl
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	cmd.Stdin = strings.NewReader(yaml)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s\n%s", err, out, yaml)
	}
	return nil
}

// Script runs hack/cluster/cluster.sh with args (partition node2, ...).
func (c *Cluster) Script(args ...string) error {
	cmd := exec.Command(filepath.Join(c.Root, "hack/cluster/cluster.sh"), args...) //nolint:gosec,noctx // the project's script
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cluster.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Token signs a token for subject with the gateway's HMAC secret, valid
// for a day.
func (c *Cluster) Token(subject string) (string, error) {
	secret, err := c.Run("kubectl", "-n", "tether-system", "get", "secret", "tether-gateway-auth", "-o", "jsonpath={.data.hmac-secret}")
	if err != nil {
		return "", fmt.Errorf("the gateway's secret: %w: %s", err, secret)
	}
	key, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return "", err
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: subject, Audience: jwt.ClaimStrings{"tether"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)),
	}).SignedString(key)
}

// ContainerPID is the host PID of a container of pod (index i of its
// containerStatuses in namespace ns), from its node's containerd.
func (c *Cluster) ContainerPID(ns, pod string, i int) (int, error) {
	return c.containerPID(pod, fmt.Sprintf("%d", i), "-n", ns, "get", "pod", pod, "-o", fmt.Sprintf("jsonpath={.status.containerStatuses[%d].containerID}", i))
}

// NamedContainerPID is the host PID of pod's container name (in namespace
// ns), from its node's containerd.
func (c *Cluster) NamedContainerPID(ns, pod, name string) (int, error) {
	return c.containerPID(pod, name, "-n", ns, "get", "pod", pod, "-o", fmt.Sprintf("jsonpath={.status.containerStatuses[?(@.name==%q)].containerID}", name))
}

// containerPID reads a container's id with kubectl args and finds its task.
func (c *Cluster) containerPID(pod, which string, args ...string) (int, error) {
	id, err := c.Run("kubectl", args...)
	if err != nil {
		return 0, fmt.Errorf("the container of pod %s: %w: %s", pod, err, id)
	}
	if id == "" {
		return 0, fmt.Errorf("pod %s has no container %s yet", pod, which)
	}
	id = strings.TrimPrefix(id, "containerd://")
	for _, sock := range c.Containerds {
		if sock == "" {
			continue
		}
		out, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "tasks", "ls").Output() //nolint:gosec,noctx // the cluster's ctr
		if err != nil {
			continue // the second node's containerd, on a one-node cluster
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == id {
				return strconv.Atoi(f[1])
			}
		}
	}
	return 0, fmt.Errorf("no task for container %s of pod %s", id, pod)
}

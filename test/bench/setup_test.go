package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/internal/load"
	"tether.dev/tether/internal/testing/testenv"
	"tether.dev/tether/internal/testing/testworker"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/agents"
)

const (
	ns            = "bench"
	conversations = 16
	audience      = "tether-bench"
	runtimeIP     = "127.0.30.1"

	idleConversation = "idle"
)

var hmacSecret = "bench-secret-0123456789abcdef0123456789"

// rig is everything the benchmarks drive.
type rig struct {
	runtimeAddr string
	minproxy    *process
	gateway     *process
	token       string
	// upstreamToken is the gateway's token for the runtime audience.
	upstreamToken string
	idle          map[string]idleResult
}

// setUp starts the runtime, the conversations, the minimal proxy and the
// gateway; they stop when tb ends.
func setUp(tb testing.TB) *rig {
	tb.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		tb.Fatal(err)
	}
	port := testworker.FreePort(tb)
	agent := &tetherv1alpha1.Agent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "echo"},
		Spec: tetherv1alpha1.AgentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{tetherv1alpha1.AgentLabel: "echo"}},
			// Room for 3 modes x 16 conversations and the idle one.
			ConversationsPerPod: 100, LeaseDurationSeconds: 10, RuntimePort: int32(port), //nolint:gosec // a port from the kernel
			Store: tetherv1alpha1.StoreSpec{Type: tetherv1alpha1.StoreMemory},
		},
	}
	if err := env.Client.Create(ctx, agent); err != nil {
		tb.Fatal(err)
	}
	w := testworker.Start(tb, env, testworker.Options{Namespace: ns, Agent: "echo", Name: "echo-0", IP: runtimeIP, Port: port,
		Log: memory.New(), Handler: agents.Echo,
		// The idle sockets all go to one conversation, past the runtime's
		// default cap of 64 a conversation.
		MaxSocketsPerConversation: *idleConns + 1})
	// Each mode has conversations of its own (a conversation's events go
	// to every socket bound to it, so sharing would make one mode's run
	// load the others' proxies); idle holds the idle sockets, so their
	// replay is empty, as a reconnecting client's is.
	var names []string
	for _, mode := range modes {
		for i := range conversations {
			names = append(names, conversationName(mode, i))
		}
	}
	for _, name := range append(names, idleConversation) {
		conv := &tetherv1alpha1.Conversation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       tetherv1alpha1.ConversationSpec{AgentRef: tetherv1alpha1.AgentReference{Name: "echo"}, Subjects: []string{"bench"}},
		}
		if err := env.Client.Create(ctx, conv); err != nil {
			tb.Fatal(err)
		}
		testworker.WaitConversation(tb, env.Client, client.ObjectKeyFromObject(conv), "Running", func(c *tetherv1alpha1.Conversation) bool {
			return c.Status.Phase == tetherv1alpha1.PhaseRunning && c.Status.Owner != nil
		})
	}

	dir := tb.TempDir()
	tokenFile := writeFile(tb, dir, "upstream-token", testworker.GatewayToken(tb, env))
	minproxyBin := build(tb, dir, "./test/bench/minproxy")
	r := &rig{runtimeAddr: w.Addr, upstreamToken: testworker.GatewayToken(tb, env), idle: map[string]idleResult{}}
	addr, admin := "127.0.0.1:"+strconv.Itoa(testworker.FreePort(tb)), "127.0.0.1:"+strconv.Itoa(testworker.FreePort(tb))
	r.minproxy = start(tb, minproxyBin, addr, admin, nil, "--listen", addr, "--admin-listen", admin,
		"--upstream", w.Addr, "--upstream-token-file", tokenFile)
	r.gateway = startGateway(tb, dir)
	var err error
	r.token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "bench", Audience: jwt.ClaimStrings{audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)),
	}).SignedString([]byte(hmacSecret))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// writeFile writes content to a file named name in dir.
func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// startGateway builds the gateway and starts it on loopback, against the
// test API server, with the load limits lifted.
func startGateway(tb testing.TB, dir string) *process {
	tb.Helper()
	tokenFile := writeFile(tb, dir, "upstream-token", testworker.GatewayToken(tb, env))
	secretFile := writeFile(tb, dir, "hmac-secret", hmacSecret)
	kubeconfig, err := env.Kubeconfig(dir)
	if err != nil {
		tb.Fatal(err)
	}
	gatewayBin := build(tb, dir, "./cmd/gateway")
	addr, admin := "127.0.0.1:"+strconv.Itoa(testworker.FreePort(tb)), "127.0.0.1:"+strconv.Itoa(testworker.FreePort(tb))
	return start(tb, gatewayBin, addr, admin, []string{"KUBECONFIG=" + kubeconfig},
		"--listen", addr, "--admin-listen", admin, "--pprof", "--zap-log-level", "error",
		"--jwt-hmac-secret-file", secretFile, "--jwt-audience", audience, "--upstream-token-file", tokenFile,
		// Load, not abuse: the per-socket limits would otherwise throttle a
		// closed loop.
		"--message-rate", "1000000", "--message-burst", "1000000", "--max-connections-per-subject", "100000",
		"--connect-rate", "100000", "--connect-burst", "100000")
}

// target is how clients reach the conversations in a mode.
func (r *rig) target(mode string) load.Target {
	switch mode {
	case "direct":
		return load.Target{URL: r.url(r.runtimeAddr, mode), Header: http.Header{"Authorization": {"Bearer " + r.upstreamToken}}}
	case "minproxy":
		return load.Target{URL: r.url(r.minproxy.addr, mode)}
	}
	return load.Target{URL: r.url(r.gateway.addr, mode), Header: http.Header{"Authorization": {"Bearer " + r.token}}}
}

// url is the socket URL of a mode's i-th conversation; i < 0 is the idle
// conversation.
func (r *rig) url(addr, mode string) func(int) string {
	return func(i int) string {
		name := idleConversation
		if i >= 0 {
			name = conversationName(mode, i%conversations)
		}
		return "ws://" + addr + protocol.ConversationPath(ns, name)
	}
}

func conversationName(mode string, i int) string { return fmt.Sprintf("%s-%d", mode, i) }

func build(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// process is a proxy running as a process of its own.
type process struct {
	cmd         *exec.Cmd
	addr, admin string
}

func start(tb testing.TB, bin, addr, admin string, env []string, args ...string) *process {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &process{cmd: cmd, addr: addr, admin: admin}
	fmt.Fprintf(os.Stderr, "%s: pid %d, serving on %s, admin on %s\n", filepath.Base(bin), cmd.Process.Pid, addr, admin)
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err == nil {
			_ = resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not come up: %v", bin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpu is the process's user and system CPU time so far.
func (p *process) cpu(tb testing.TB) time.Duration {
	return processCPU(tb, strconv.Itoa(p.cmd.Process.Pid))
}

func processCPU(tb testing.TB, pid string) time.Duration {
	tb.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime is the
	// 14th field of the line, stime the 15th.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// machineCPU is the CPU time all processes have used so far.
func machineCPU(tb testing.TB) time.Duration {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:]
	var busy int64
	for i, f := range fields {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100
}

// memory is the Go heap and stacks in use after a forced collection, and
// the resident set size.
func (p *process) memory(tb testing.TB) (m memoryUse) {
	tb.Helper()
	resp, err := http.Get("http://" + p.admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	resp, err = http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), " ")
		v, _ := strconv.ParseFloat(value, 64)
		switch {
		case ok && name == "go_memstats_heap_inuse_bytes":
			m.heap = int64(v)
		case ok && name == "go_memstats_stack_inuse_bytes":
			m.stack = int64(v)
		}
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			m.rss = kb << 10
		}
	}
	return m
}

type memoryUse struct{ heap, stack, rss int64 }

// saveProfiles writes the proxy's heap and goroutine profiles to dir, to see
// where an idle socket's memory goes.
func (p *process) saveProfiles(tb testing.TB, dir, name string) {
	tb.Helper()
	for _, profile := range []string{"heap", "goroutine"} {
		resp, err := http.Get("http://" + p.admin + "/debug/pprof/" + profile)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+profile+".pb.gz"), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

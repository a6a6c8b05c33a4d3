// Command runtime runs in every worker pod of an Agent: it holds the pod's
// Lease, claims the conversations assigned to the pod, runs them through the
// agent, and serves the internal WebSocket endpoint the gateway dials.
//
// The pod's identity comes from the environment the Agent controller injects
// (TETHER_POD_NAME, TETHER_POD_NAMESPACE, TETHER_POD_UID, TETHER_POD_IP,
// TETHER_AGENT, TETHER_LEASE_DURATION_SECONDS, TETHER_RUNTIME_PORT); the
// store settings and busy policy come from the Agent object.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog/memory"
	"tether.dev/tether/eventlog/stores"
	"tether.dev/tether/internal/apidial"
	"tether.dev/tether/internal/tlsfiles"
	tetherruntime "tether.dev/tether/runtime"
	"tether.dev/tether/runtime/agents"
	"tether.dev/tether/runtime/conversation"
	"tether.dev/tether/runtime/gatewayauth"
	"tether.dev/tether/runtime/stdio"
)

func main() {
	var agentName, agentCommand, gatewayIdentity, gatewayAudience, probeAddr, metricsAddr string
	var shutdownTimeout time.Duration
	var install, serveSpawner, agentSpawner, tlsDir string
	flag.StringVar(&agentName, "agent", "", "The in-process agent to run: echo or approval.")
	flag.StringVar(&agentCommand, "agent-command", "", "A program speaking JSON lines over stdio (docs/agents.md), run once per conversation; its arguments follow --.")
	flag.StringVar(&gatewayIdentity, "gateway-identity", os.Getenv("TETHER_GATEWAY_IDENTITY"),
		"The only identity allowed to connect: the gateway's ServiceAccount, system:serviceaccount:NAMESPACE:NAME (the manager sets TETHER_GATEWAY_IDENTITY).")
	flag.StringVar(&gatewayAudience, "gateway-audience", gatewayauth.DefaultAudience, "The audience the gateway's tokens must be valid for.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.DurationVar(&shutdownTimeout, "shutdown-timeout", 25*time.Second,
		"How long a stopping runtime takes at most to let go of its conversations and release its Lease; keep it under the pod's termination grace period (30 s by default).")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of /metrics (plain HTTP), or 0 for none. tether_runtime_event_log_holes_total is there.")
	flag.StringVar(&install, "install", "", "Copy this binary to the given path and exit (how the manager puts the runtime into an image of your own).")
	flag.StringVar(&serveSpawner, "serve-spawner", "", "Run as the spawner of the agent's own container: listen on this Unix socket and start --agent-command once per conversation for the runtime in the pod's other container (how the manager runs spec.agentContainer).")
	flag.StringVar(&agentSpawner, "agent-spawner", "", "Have agent programs started by the spawner listening on this Unix socket, in the agent's own container, instead of in this one.")
	flag.StringVar(&tlsDir, "tls-dir", os.Getenv("TETHER_RUNTIME_TLS_DIR"),
		"Directory of tls.crt and tls.key (a kubernetes.io/tls Secret) to serve the gateway over TLS with, read again when they change; plain when empty (the manager sets TETHER_RUNTIME_TLS_DIR).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if install != "" {
		if err := installSelf(install); err != nil {
			ctrl.Log.Error(err, "installing the runtime")
			os.Exit(1)
		}
		return
	}
	if serveSpawner != "" {
		if err := runSpawner(serveSpawner, agentCommand, flag.Args()); err != nil {
			ctrl.Log.Error(err, "spawner stopped")
			os.Exit(1)
		}
		return
	}
	handler, err := chooseAgent(agentName, agentCommand, agentSpawner, flag.Args())
	if err != nil {
		ctrl.Log.Error(err, "choosing the agent")
		os.Exit(2)
	}
	if err := run(handler, gatewayIdentity, gatewayAudience, tlsDir, probeAddr, metricsAddr, shutdownTimeout); err != nil {
		ctrl.Log.Error(err, "runtime stopped")
		os.Exit(1)
	}
}

// chooseAgent returns the in-process agent named, or the stdio program.
func chooseAgent(name, command, spawner string, args []string) (conversation.Handler, error) {
	switch {
	case spawner != "" && (name != "" || command != ""):
		return nil, errors.New("give --agent-spawner alone: the spawner knows the agent's command")
	case spawner != "":
		return &stdio.Handler{Spawner: spawner}, nil
	case name != "" && command != "":
		return nil, errors.New("give --agent or --agent-command, not both")
	case command != "":
		return &stdio.Handler{Command: command, Args: args}, nil
	}
	handler, ok := agents.ByName(name)
	if !ok {
		return nil, fmt.Errorf("unknown agent %q: want echo or approval, or --agent-command", name)
	}
	return handler, nil
}

func run(handler conversation.Handler, gatewayIdentity, gatewayAudience, tlsDir, probeAddr, metricsAddr string, shutdownTimeout time.Duration) error {
	pod, leaseDuration, port, err := podFromEnv()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(gatewayIdentity, "system:serviceaccount:") {
		return fmt.Errorf("--gateway-identity %q is not a ServiceAccount's user name (system:serviceaccount:NAMESPACE:NAME)", gatewayIdentity)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := tetherv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg := apidial.Install(ctrl.GetConfigOrDie())
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	var agent tetherv1alpha1.Agent
	if err := direct.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: pod.Agent}, &agent); err != nil {
		return fmt.Errorf("reading Agent %s/%s: %w", pod.Namespace, pod.Agent, err)
	}
	log, err := stores.Open(ctx, agent.Spec.Store, pod.Namespace, direct, stores.MountedSecrets{Dir: stores.MountDir})
	if err != nil {
		return fmt.Errorf("opening the event log: %w", err)
	}
	defer func() { _ = log.Close() }()
	if _, isMemory := log.(*memory.Log); isMemory {
		ctrl.Log.Info("WARNING: " + memory.Warning)
	}

	verifier, err := gatewayauth.New(gatewayauth.Config{Client: direct, Identity: gatewayIdentity, Audience: gatewayAudience})
	if err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Cache: tetherruntime.CacheOptions(pod),
		Metrics: metricsserver.Options{BindAddress: metricsAddr}, HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		return err
	}
	keeper := tetherruntime.NewLeaseKeeper(direct, pod, leaseDuration, nil)
	host := &tetherruntime.Host{
		Client: mgr.GetClient(), Direct: direct, Pod: pod, Lease: keeper, Log: log, Handler: handler,
		BusyPolicy: agent.Spec.BusyPolicy, MaxQueued: int(agent.Spec.MaxQueuedMessages),
		Retention: int(agent.Spec.Store.Retention.MaxEvents),
		Recorder:  mgr.GetEventRecorder("tether-runtime"),
	}
	if err := host.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready only while the Lease is held: a pod that cannot renew it should
	// not be sent new work.
	if err := mgr.AddReadyzCheck("lease", func(*http.Request) error {
		if !keeper.Held() {
			return errors.New("the pod's Lease is not held")
		}
		return nil
	}); err != nil {
		return err
	}

	server := &http.Server{
		Addr:              net.JoinHostPort(pod.IP, strconv.Itoa(port)),
		Handler:           &tetherruntime.Server{Host: host, Gateway: verifier},
		ReadHeaderTimeout: 5 * time.Second,
	}
	serve := server.ListenAndServe
	if tlsDir != "" {
		pair, err := tlsfiles.NewKeyPair(filepath.Join(tlsDir, "tls.crt"), filepath.Join(tlsDir, "tls.key"))
		if err != nil {
			return err
		}
		server.TLSConfig = &tls.Config{GetCertificate: pair.GetCertificate, MinVersion: tls.VersionTLS13}
		serve = func() error { return server.ListenAndServeTLS("", "") }
	}
	// The Lease keeper stops after the conversations, not with the signal:
	// the Lease must be held until nothing acts for them any more.
	keeperCtx, stopKeeper := context.WithCancel(context.WithoutCancel(ctx))
	defer stopKeeper()
	errs := make(chan error, 3)
	keeperDone, mgrDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(keeperDone); errs <- keeper.Run(keeperCtx) }()
	go func() { defer close(mgrDone); errs <- mgr.Start(ctx) }()
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	}()
	ctrl.Log.Info("runtime started", "pod", pod.Name, "agent", pod.Agent, "listen", server.Addr, "tls", tlsDir != "", "store", agent.Spec.Store.Type)
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errs:
	}
	return errors.Join(failed, shutDown(host, server, stopKeeper, keeperDone, mgrDone, shutdownTimeout))
}

// shutDown lets go in order, within timeout: every conversation is halted
// and waited for at once (their sockets closed, so the gateway finds the new
// owner), then the Lease is released so the controller moves them at once
// instead of waiting for it to expire, then the manager and the endpoint
// stop. The Lease is gone before the process exits.
func shutDown(host *tetherruntime.Host, server *http.Server, stopKeeper func(), keeperDone, mgrDone <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	host.DropAll()
	stopKeeper()
	wait := func(what string, done <-chan struct{}) error {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-done:
			return nil
		case <-t.C:
			return fmt.Errorf("%s did not stop within the shutdown timeout (%s)", what, timeout)
		}
	}
	errKeeper := wait("the Lease keeper", keeperDone)
	errMgr := wait("the manager", mgrDone)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return errors.Join(errKeeper, errMgr, server.Shutdown(ctx))
}

func podFromEnv() (tetherruntime.Pod, time.Duration, int, error) {
	get := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("%s is not set (the Agent controller sets it in the pod template)", name)
		}
		return v, nil
	}
	var pod tetherruntime.Pod
	var err error
	var uid, lease, port string
	for _, f := range []struct {
		name string
		into *string
	}{
		{"TETHER_POD_NAME", &pod.Name}, {"TETHER_POD_NAMESPACE", &pod.Namespace}, {"TETHER_POD_UID", &uid},
		{"TETHER_POD_IP", &pod.IP}, {"TETHER_AGENT", &pod.Agent},
		{"TETHER_LEASE_DURATION_SECONDS", &lease}, {"TETHER_RUNTIME_PORT", &port},
	} {
		if *f.into, err = get(f.name); err != nil {
			return pod, 0, 0, err
		}
	}
	pod.UID = types.UID(uid)
	seconds, err := strconv.Atoi(lease)
	if err != nil || seconds < 2 {
		return pod, 0, 0, fmt.Errorf("TETHER_LEASE_DURATION_SECONDS=%q is not a number of seconds of 2 or more", lease)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return pod, 0, 0, fmt.Errorf("TETHER_RUNTIME_PORT=%q is not a port", port)
	}
	return pod, time.Duration(seconds) * time.Second, p, nil
}

// runSpawner serves the agent container's spawner on socket until SIGTERM.
// Its programs get this container's environment, which holds no Kubernetes
// credentials.
func runSpawner(socket, command string, args []string) error {
	if command == "" {
		return errors.New("--serve-spawner needs --agent-command")
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", socket)
	if err != nil {
		return err
	}
	// The runtime's container runs as another user; only the two containers
	// mount the socket's volume.
	if err := os.Chmod(socket, 0o666); err != nil { //nolint:gosec // see above
		return err
	}
	ctrl.Log.Info("spawner started", "socket", socket, "command", command)
	spawner := &stdio.Spawner{Command: command, Args: args, Env: os.Environ()}
	return spawner.Serve(ctx, l)
}

// installSelf copies this executable to path (an emptyDir shared with the
// agent's container), readable and executable by anyone, writable by no one.
func installSelf(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(self) //nolint:gosec // this very binary
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o555); err != nil { //nolint:gosec // an executable for the agent's container
		return err
	}
	return os.Rename(tmp, path)
}

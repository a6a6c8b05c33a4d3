// Command gateway is Tether's public WebSocket endpoint: it authenticates a
// client, finds the pod that owns its conversation, and pipes the client's
// socket to that pod, holding it open while the conversation moves. Run
// several replicas behind a Service and an Ingress; any replica serves any
// conversation.
package main

import (
	"context"
	"flag"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"tether.dev/tether/gateway"
	"tether.dev/tether/gateway/auth"
	"tether.dev/tether/internal/apidial"
	"tether.dev/tether/internal/tlsfiles"
)

type options struct {
	listen, adminListen              string
	namespaces, origins              string
	hmacSecretFile, publicKeyFiles   string
	audience, issuer                 string
	upstreamTokenFile                string
	runtimeCAFile                    string
	maxTokenLifetime                 time.Duration
	connectRate                      float64
	connectBurst, maxUnauthenticated int
	holdTimeout, pingPeriod          time.Duration
	drainDelay, shutdownTimeout      time.Duration
	holdFrames, maxConnsPerSubject   int
	messageBurst                     int
	messageRate                      float64
	pprof                            bool
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8080", "Address of the WebSocket endpoint (in a pod: :8080).")
	flag.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8081", "Address of /healthz, /readyz and /metrics (in a pod: :8081).")
	flag.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces whose conversations this gateway serves; all when empty.")
	flag.StringVar(&o.origins, "allowed-origins", "", "Comma-separated Origins (scheme://host[:port]) browsers may connect from; \"*\" allows any. Programs send no Origin and are allowed.")
	flag.StringVar(&o.hmacSecretFile, "jwt-hmac-secret-file", "",
		"File holding the HMAC secrets (32 bytes or more, one per line: all are accepted, for a rotation with overlap) that verify HS256/384/512 tokens; read again when it changes.")
	flag.StringVar(&o.publicKeyFiles, "jwt-public-key-files", "", "Comma-separated PEM files of public keys (RSA, ECDSA, Ed25519) that verify tokens; read again when they change.")
	flag.DurationVar(&o.maxTokenLifetime, "max-token-lifetime", 24*time.Hour, "Longest lifetime (exp - iat) of a token accepted.")
	flag.StringVar(&o.audience, "jwt-audience", "", "Audience tokens must name (aud); not checked when empty.")
	flag.StringVar(&o.issuer, "jwt-issuer", "", "Issuer tokens must name (iss); not checked when empty.")
	flag.StringVar(&o.runtimeCAFile, "runtime-ca-file", "",
		"PEM bundle of the CA that signs the runtimes' serving certificates: the gateway then dials them over TLS, checking the name tether-runtime.NAMESPACE; read again when it changes. Plain ws:// when empty.")
	flag.StringVar(&o.upstreamTokenFile, "upstream-token-file", "/var/run/secrets/tether/upstream/token",
		"File holding the gateway's projected ServiceAccount token for the runtimes' audience (tether-runtime); read again every minute as the kubelet rotates it.")
	flag.DurationVar(&o.holdTimeout, "hold-timeout", 60*time.Second, "How long a socket is held without an owner before it is closed with 4012.")
	flag.DurationVar(&o.pingPeriod, "ping-period", 25*time.Second, "How often both sockets of a session are pinged; keep it below the idle timeout of the proxies in front. A socket silent (no frame, no pong) for over 60 s is dropped at the next ping: the client is closed, the owner's socket dialled again.")
	flag.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second, "After SIGTERM, how long the gateway reports not ready before closing sockets, so load balancers stop sending new ones.")
	flag.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "How long closing sockets may take after the drain delay.")
	flag.IntVar(&o.holdFrames, "hold-frames", 16, "Client frames held per socket while its conversation has no owner.")
	flag.IntVar(&o.maxConnsPerSubject, "max-connections-per-subject", 32, "Open sockets one token subject may hold on this replica.")
	flag.Float64Var(&o.connectRate, "connect-rate", 5, "New sockets per second one token subject may open on this replica.")
	flag.IntVar(&o.connectBurst, "connect-burst", 40, "New sockets one token subject may open at once above the connect rate.")
	flag.IntVar(&o.maxUnauthenticated, "max-unauthenticated-connections", 1024,
		"Connections accepted whose WebSocket handshake is not done, on this replica; more are closed at once.")
	flag.Float64Var(&o.messageRate, "message-rate", 10, "Frames per second a socket may send on average; a flood is closed with 4009.")
	flag.IntVar(&o.messageBurst, "message-burst", 20, "Frames a socket may send at once above the rate.")
	flag.BoolVar(&o.pprof, "pprof", false, "Serve /debug/pprof on the admin address.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.Error(err, "gateway stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("gateway")
	authCfg := auth.Config{Audience: o.audience, Issuer: o.issuer, AllowedOrigins: split(o.origins), MaxTokenLifetime: o.maxTokenLifetime}
	keys := keyFiles{hmac: o.hmacSecretFile, public: split(o.publicKeyFiles)}
	loaded := keys.fingerprint()
	var err error
	if authCfg.HMACSecrets, authCfg.PublicKeys, err = keys.load(); err != nil {
		return err
	}
	authenticator, err := auth.New(authCfg)
	if err != nil {
		return err
	}
	go keys.watch(ctx, authenticator, loaded, 30*time.Second, log)
	upstreamToken := gateway.FileToken(o.upstreamTokenFile)
	if _, err := upstreamToken(); err != nil {
		return err
	}

	var runtimeCA *tlsfiles.CAPool
	if o.runtimeCAFile != "" {
		if runtimeCA, err = tlsfiles.NewCAPool(o.runtimeCAFile); err != nil {
			return err
		}
	}

	directory, err := gateway.NewDirectory(apidial.Install(ctrl.GetConfigOrDie()), gateway.DirectoryOptions{Namespaces: split(o.namespaces)})
	if err != nil {
		return err
	}
	if err := directory.Start(ctx); err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	server, err := gateway.NewServer(gateway.Config{
		Auth: authenticator, Conversations: directory, UpstreamToken: upstreamToken, RuntimeCA: runtimeCA,
		HoldTimeout: o.holdTimeout, HoldFrames: o.holdFrames, MaxConnsPerSubject: o.maxConnsPerSubject,
		ConnectRate: o.connectRate, ConnectBurst: o.connectBurst, MaxUnauthenticated: o.maxUnauthenticated,
		MessageRate: o.messageRate, MessageBurst: o.messageBurst, PingPeriod: o.pingPeriod,
		Metrics: gateway.NewMetrics(registry), Log: log,
	})
	if err != nil {
		return err
	}

	var ready atomic.Bool
	ready.Store(true)
	admin := http.NewServeMux()
	admin.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	admin.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	admin.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	if o.pprof {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/conversations/", server)

	public := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 32 << 10, IdleTimeout: 60 * time.Second,
		ConnState: server.TrackConn}
	adminServer := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}
	publicListener, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.listen)
	if err != nil {
		return err
	}
	adminListener, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.adminListen)
	if err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- public.Serve(publicListener) }()
	go func() { errs <- adminServer.Serve(adminListener) }()
	log.Info("serving", "address", publicListener.Addr().String(), "admin", adminListener.Addr().String())

	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	// Not ready first, so load balancers stop sending new sockets; then
	// close the open ones with 1001 so their clients reconnect elsewhere.
	ready.Store(false)
	log.Info("draining", "delay", o.drainDelay, "sessions", server.Sessions())
	time.Sleep(o.drainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	_ = public.Shutdown(shutdownCtx)
	if err := server.Drain(shutdownCtx); err != nil {
		log.Error(err, "sessions still open at the shutdown timeout")
	}
	_ = adminServer.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Command manager runs Tether's controllers: Agent pools and Conversation
// placement, failure detection, rescheduling, suspend and TTL.
package main

import (
	"crypto/tls"
	"flag"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/controllers"
	"tether.dev/tether/internal/apidial"
)

// The metrics endpoint authenticates and authorizes its callers.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

func main() {
	var (
		metricsAddr, probeAddr, leaderNamespace string
		secureMetrics, leaderElect              bool
		opts                                    controllers.Options
		qps                                     float64
		burst                                   int
		leaseDuration, renewDeadline, retry     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, to callers the API server authenticates and authorizes (get on /metrics).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader, so that only one replica acts at a time.")
	flag.StringVar(&leaderNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	// Nothing moves while there is no leader: a leader that crashed is
	// replaced once its Lease expires, so it is shorter than
	// controller-runtime's 15 s (a renewal a second costs one write).
	flag.DurationVar(&leaseDuration, "leader-election-lease-duration", 8*time.Second, "How long a crashed leader holds the leader Lease before another replica takes over.")
	flag.DurationVar(&renewDeadline, "leader-election-renew-deadline", 6*time.Second, "How long the leader keeps trying to renew before it gives up leading.")
	flag.DurationVar(&retry, "leader-election-retry-period", time.Second, "How often the leader renews, and the others try to take over.")
	flag.IntVar(&opts.Concurrency, "concurrency", 16, "Reconciles each controller runs at once.")
	flag.DurationVar(&opts.NotReadyGrace, "not-ready-grace", 5*time.Second, "How long an owner pod may be not ready before its conversations move.")
	flag.StringVar(&opts.Runtime.GatewayIdentity, "gateway-identity", "",
		"The gateway's ServiceAccount user name (system:serviceaccount:NAMESPACE:NAME), the only identity Agents' runtimes let connect; set as "+controllers.EnvGatewayIdentity+" in their pods.")
	flag.StringVar(&opts.Runtime.ServiceAccount, "runtime-service-account", "", "ServiceAccount of an Agent's pods whose template names none.")
	flag.StringVar(&opts.Runtime.TLSSecret, "runtime-tls-secret", "",
		"A kubernetes.io/tls Secret, in each agent namespace, whose certificate the runtimes serve the gateway with (the chart makes one per namespace, for the name tether-runtime.NAMESPACE); plain when empty.")
	flag.StringVar(&opts.Runtime.Image, "runtime-image", "", "The runtime's image, injected into the container an Agent names in spec.agentContainer (an agent in an image of your own).")
	flag.Float64Var(&qps, "kube-api-qps", 200, "Sustained requests per second to the API server (client-go's default of 5 is far too low for thousands of conversations).")
	flag.IntVar(&burst, "kube-api-burst", 400, "Request burst to the API server.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		log.Error(err, "registering Kubernetes types")
		os.Exit(1)
	}
	if err := tetherv1alpha1.AddToScheme(scheme); err != nil {
		log.Error(err, "registering Tether types")
		os.Exit(1)
	}

	cfg := apidial.Install(ctrl.GetConfigOrDie())
	cfg.QPS, cfg.Burst = float32(qps), burst
	metricsOpts := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		// HTTP/2 is off: it widens the attack surface (CVE-2023-44487) and
		// metrics scrapes gain nothing from it.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "tether-manager.tether.dev",
		LeaderElectionNamespace:       leaderNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retry,
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, opts); err != nil {
		log.Error(err, "setting up the controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "adding the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "adding the readiness check")
		os.Exit(1)
	}
	log.Info("starting", "concurrency", opts.Concurrency, "qps", qps, "burst", burst, "leaderElect", leaderElect)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

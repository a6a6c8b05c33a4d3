package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"tether.dev/tether/gateway/auth"
)

// Metrics are the gateway's Prometheus metrics. Label values come from fixed
// sets: never a conversation, a subject or an error text.
type Metrics struct {
	Connections       prometheus.Gauge
	Unauthenticated   prometheus.Gauge
	Holds             prometheus.Gauge
	HoldSeconds       prometheus.Histogram
	UpstreamReconnect prometheus.Counter
	OwnerChanged      prometheus.Counter
	Frames            *prometheus.CounterVec
	AuthFailures      *prometheus.CounterVec
	Refused           *prometheus.CounterVec

	// framesIn and framesOut are Frames' two series, looked up once.
	framesIn, framesOut prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_gateway_connections", Help: "Client sockets open.",
		}),
		Unauthenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_gateway_unauthenticated_connections", Help: "TCP connections accepted whose WebSocket handshake is not done (not authenticated yet).",
		}),
		Holds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_gateway_holds", Help: "Client sockets held open while their conversation has no owner.",
		}),
		HoldSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tether_gateway_hold_duration_seconds", Help: "How long sockets were held until an owner was reached or the hold ended.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120},
		}),
		UpstreamReconnect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_gateway_upstream_reconnects_total", Help: "Times an owner's socket was lost mid-session and the gateway connected again.",
		}),
		OwnerChanged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_gateway_owner_changes_total", Help: "Owner sockets dropped because the Conversation named a new owner or epoch while they were open.",
		}),
		Frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_gateway_frames_total", Help: "Frames forwarded, by direction: in (client to owner) and out (owner to client).",
		}, []string{"direction"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_gateway_auth_failures_total", Help: "Connections refused by authentication, by reason.",
		}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_gateway_refused_total", Help: "Connections and sessions ended by the gateway for a client's fault or a limit, by reason.",
		}, []string{"reason"}),
	}
	m.framesIn, m.framesOut = m.Frames.WithLabelValues("in"), m.Frames.WithLabelValues("out")
	for _, r := range []auth.Reason{auth.ReasonNoToken, auth.ReasonMalformed, auth.ReasonBadSignature, auth.ReasonExpired,
		auth.ReasonNotYetValid, auth.ReasonWrongAudience, auth.ReasonWrongIssuer, auth.ReasonNoSubject, auth.ReasonForbiddenOrigin, auth.ReasonTooLong} {
		m.AuthFailures.WithLabelValues(string(r))
	}
	for _, r := range refusalReasons {
		m.Refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Unauthenticated, m.Holds, m.HoldSeconds, m.UpstreamReconnect, m.OwnerChanged, m.Frames, m.AuthFailures, m.Refused)
	}
	return m
}

// Reasons a session is refused or ended by the gateway (metric labels).
const (
	refusedForbidden     = "forbidden"
	refusedNotFound      = "not_found"
	refusedFinished      = "finished"
	refusedTooManyConns  = "too_many_connections"
	refusedFlood         = "message_flood"
	refusedTooLarge      = "frame_too_large"
	refusedHoldTimeout   = "hold_timeout"
	refusedSlowConsumer  = "slow_consumer"
	refusedBadRequest    = "bad_request"
	refusedUpstreamError = "upstream_error"
	refusedUnauthLimit   = "unauthenticated_limit"
	refusedConnectRate   = "connect_rate"
)

var refusalReasons = []string{refusedForbidden, refusedNotFound, refusedFinished, refusedTooManyConns, refusedFlood,
	refusedTooLarge, refusedHoldTimeout, refusedSlowConsumer, refusedBadRequest, refusedUpstreamError,
	refusedUnauthLimit, refusedConnectRate}

package controllers

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// Label values come from fixed sets (phases and condition reasons), never
// from object names or errors.
var (
	reschedulesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_conversation_reschedules_total",
		Help: "Conversations moved off their owner, by reason: a lost owner, or a drained one (OwnerDraining).",
	}, []string{"reason"})

	ownerLossToNewOwnerSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tether_conversation_owner_loss_to_new_owner_seconds",
		Help:    "Time from an owner's loss (pod deletion, failure or Lease expiry) to the conversation's assignment to a new pod.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	})

	placementSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tether_conversation_placement_seconds",
		Help:    "Time from a conversation needing an owner (created or woken) to its first assignment.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	})

	apiGapSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tether_manager_api_server_gap_seconds",
		Help:    "Gaps in which the manager had no answer from the API server's /readyz; each delays judging Leases by a Lease duration.",
		Buckets: []float64{1, 2, 5, 10, 30, 60, 300},
	})

	placementsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_conversation_placements_total",
		Help: "Placement attempts by result (placed, no_capacity, agent_not_found).",
	}, []string{"result"})
)

var allPhases = []tetherv1alpha1.ConversationPhase{
	tetherv1alpha1.PhasePending, tetherv1alpha1.PhaseRunning, tetherv1alpha1.PhaseAwaitingInput,
	tetherv1alpha1.PhaseRescheduling, tetherv1alpha1.PhaseSuspended, tetherv1alpha1.PhaseSucceeded, tetherv1alpha1.PhaseFailed,
}

// phaseCollector reports conversations by phase from the informer cache at
// scrape time, so the gauge is exact without bookkeeping in the reconciler.
type phaseCollector struct {
	reader client.Reader
	desc   *prometheus.Desc
}

func newPhaseCollector(reader client.Reader) *phaseCollector {
	return &phaseCollector{reader: reader, desc: prometheus.NewDesc(
		"tether_conversations", "Conversations by phase (an empty phase counts as Pending).", []string{"phase"}, nil)}
}

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	var list tetherv1alpha1.ConversationList
	if err := c.reader.List(context.Background(), &list, client.UnsafeDisableDeepCopy); err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	counts := map[tetherv1alpha1.ConversationPhase]int{}
	for i := range list.Items {
		phase := list.Items[i].Status.Phase
		if phase == "" {
			phase = tetherv1alpha1.PhasePending
		}
		counts[phase]++
	}
	for _, p := range allPhases {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[p]), string(p))
	}
}

var registerOnce sync.Once

// registerMetrics adds Tether's metrics to controller-runtime's registry,
// which the manager serves. Only the first manager of a process registers.
func registerMetrics(reader client.Reader) {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(reschedulesTotal, ownerLossToNewOwnerSeconds, placementSeconds, placementsTotal, apiGapSeconds, flapsTotal, newPhaseCollector(reader))
	})
}

package runtime

import (
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/textlimit"
)

// The runtime reports an event log found with a hole on the Conversation.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// holesFound counts reads that found the event log holding less than its
// index says. Any increase needs an operator: an acknowledged event is gone.
var holesFound = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "tether_runtime_event_log_holes_total",
	Help: "Reads of a conversation's event log that found a hole: an event its index names is missing. Never expected; page on any increase.",
})

func init() { metrics.Registry.MustRegister(holesFound) }

// reportHole makes a hole loud: a metric and a Warning event on the
// Conversation (the history is not served as complete; see eventlog.ErrHole).
func (h *Host) reportHole(conv *tetherv1alpha1.Conversation, err error) {
	holesFound.Inc()
	if h.Recorder != nil {
		h.Recorder.Eventf(conv, nil, corev1.EventTypeWarning, string(tetherv1alpha1.ReasonEventLogHole), "ReadEventLog",
			"%s", textlimit.Truncate("the event log has a hole; its history is not served until an operator repairs it: "+err.Error(), 1024))
	}
}

package memory_test

import (
	"testing"

	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
)

func TestConformance(t *testing.T) {
	eventlogtest.Run(t, memory.New(), eventlogtest.Options{FencingRounds: 50})
}

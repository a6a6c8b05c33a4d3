package memory_test

import (
	"testing"

	"tether.dev/tether/eventlog/eventlogtest"
	"tether.dev/tether/eventlog/memory"
)

func TestConformance(t *testing.T) {
	eventlogtest.Run(t, memory.New(), eventlogtest.Options{FencingRounds: 50})
}

func BenchmarkAppend(b *testing.B)         { eventlogtest.BenchmarkAppend(b, memory.New()) }
func BenchmarkAppendParallel(b *testing.B) { eventlogtest.BenchmarkAppendParallel(b, memory.New()) }
func BenchmarkReadAfterN(b *testing.B)     { eventlogtest.BenchmarkReadAfterN(b, memory.New()) }

package conversation_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every conversation a test starts is stopped by the end of the test, and so
// is every goroutine it ran.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

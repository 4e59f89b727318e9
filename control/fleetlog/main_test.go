package fleetlog_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them, which
// includes tessera's background work after Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

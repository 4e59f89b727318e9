package vault_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(stopAfter{m}) }

// stopAfter runs the tests, then stops the etcd cluster they may have
// started (waiting for its goroutines), so that the leak check sees only
// what the tests left behind.
type stopAfter struct{ m *testing.M }

func (s stopAfter) Run() int {
	code := s.m.Run()
	stopEtcd()
	return code
}

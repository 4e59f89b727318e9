package vault_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(stopAfter{m}) }

// stopAfter runs the tests, then stops the etcd cluster they may have
// started, so that the leak check sees only what the tests left behind.
type stopAfter struct{ m *testing.M }

func (s stopAfter) Run() int {
	code := s.m.Run()
	if stopEtcd() {
		// An etcd member's HTTP connection can outlive its Close by up
		// to its 5 s read timeout: give them that long, longer than
		// goleak waits, before the check.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if goleak.Find() == nil {
				break
			}
		}
	}
	return code
}

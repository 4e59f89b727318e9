package control_test

import (
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	"k8s.io/klog/v2"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // tessera's progress lines
	goleak.VerifyTestMain(m)
}

package main

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/stackctl/stack/internal/stacktest"
)

// stackBin is the stack binary TestMain builds; empty with -short, where
// the tests that run the harness end to end skip themselves.
var stackBin string

// TestMain builds stack first and fails the package's tests when a
// goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stacktest.BuildFirst(m, "stack-bench", func(ctx context.Context, dir string) (err error) {
		stackBin, err = stacktest.BuildStack(ctx, dir)
		return err
	}))
}

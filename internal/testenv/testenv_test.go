package testenv_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/stackctl/stack/internal/testenv"
)

// recorder is a testing.TB that records how a test ended instead of
// ending the real one.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) { r.skipped, r.msg = true, fmt.Sprint(args...) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestMissing(t *testing.T) {
	cases := []struct {
		name       string
		ci         string
		inCI       bool
		skip, fail bool
		msg        string
	}{
		{"developer machine", "", false, true, false, "node is not on PATH"},
		{"CI", "true", true, false, true, "node is not on PATH (required in CI)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			if got := testenv.InCI(); got != tc.inCI {
				t.Fatalf("InCI() = %v with CI=%q", got, tc.ci)
			}
			r := &recorder{TB: t}
			testenv.Missing(r, "node is not on PATH")
			if r.skipped != tc.skip || r.failed != tc.fail || r.msg != tc.msg {
				t.Errorf("skipped %v, failed %v, message %q; want skipped %v, failed %v, message %q",
					r.skipped, r.failed, r.msg, tc.skip, tc.fail, tc.msg)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	t.Setenv("CI", "true")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	if got := testenv.LookPath(r, exe); got != exe || r.failed || r.skipped {
		t.Errorf("LookPath(%s) = %q (failed %v, skipped %v)", exe, got, r.failed, r.skipped)
	}
	testenv.LookPath(r, "stack-testenv-no-such-command")
	if want := "stack-testenv-no-such-command is not on PATH (required in CI)"; !r.failed || r.msg != want {
		t.Errorf("a missing command in CI: failed %v, message %q; want %q", r.failed, r.msg, want)
	}
}

// Package testenv decides what a test does when this machine lacks
// something it needs (a command, an npm package, a Python module): it
// skips on a developer's machine and fails in CI, where .ci/run installs
// everything, so a missing install step cannot pass as a skipped test.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in continuous integration: $CI is
// set, as .ci/run sets it.
func InCI() bool { return os.Getenv("CI") != "" }

// Missing ends the test because what it needs is missing, saying why:
// it fails in CI and skips elsewhere.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (required in CI)", why)
	} else {
		t.Skip(why)
	}
}

// LookPath returns the path of the command name, or ends the test with
// Missing when it is not on $PATH.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not on PATH")
	}
	return path
}

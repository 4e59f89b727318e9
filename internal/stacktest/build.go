package stacktest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ModuleRoot returns the directory holding the go.mod of the module the
// tests run in, where package paths such as ./cmd/stack are resolved.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: %w", ErrNoModule)
	}
	return filepath.Dir(gomod), nil
}

// Build compiles the main package pkg (a path relative to the module root,
// such as ./cmd/stack) into dir and returns the binary's path, named after
// the package's last element. ctx bounds the build.
func Build(ctx context.Context, dir, pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// BuildStack compiles the stack CLI into dir and returns the binary's path.
func BuildStack(ctx context.Context, dir string) (string, error) {
	return Build(ctx, dir, "./cmd/stack")
}

// BuildTimeout bounds the builds RunMain makes: a cold build of every
// dependency takes minutes on a small machine.
const BuildTimeout = 8 * time.Minute

// RunMain is the body of TestMain in a package of end-to-end tests named
// name. Unless the tests run with -short (they then skip themselves), it
// calls build to put the binaries they need in a temporary directory, runs
// the tests and removes the directory. It returns the exit code for
// os.Exit.
func RunMain(m *testing.M, name string, build func(ctx context.Context, dir string) error) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "stack-"+name+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	if err := build(ctx, dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return m.Run()
}

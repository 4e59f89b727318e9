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

// BuildTimeout bounds the builds BuildFirst makes: a cold build of every
// dependency takes minutes on a small machine.
const BuildTimeout = 8 * time.Minute

// BuildFirst returns m with a Run that, unless the tests run with -short
// (they then skip themselves), first calls build to put the binaries the
// tests of the package named name need in a temporary directory, and
// removes the directory after them. TestMain hands it to
// goleak.VerifyTestMain, which runs it and exits with its code.
func BuildFirst(m *testing.M, name string, build func(ctx context.Context, dir string) error) interface{ Run() int } {
	return buildFirst{m: m, name: name, build: build}
}

type buildFirst struct {
	m     *testing.M
	name  string
	build func(ctx context.Context, dir string) error
}

func (b buildFirst) Run() int {
	flag.Parse()
	if testing.Short() {
		return b.m.Run()
	}
	dir, err := os.MkdirTemp("", "stack-"+b.name+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", b.name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	if err := b.build(ctx, dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", b.name, err)
		return 1
	}
	return b.m.Run()
}

package stacktest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Bounds on everything that waits, so a broken proxy or client fails a
// test instead of hanging it.
const (
	// CommandTimeout bounds one command run to completion by Run.
	CommandTimeout = 30 * time.Second
	// StartTimeout bounds how long StartSidecar waits for the run file.
	StartTimeout = 15 * time.Second
	// StopTimeout bounds how long Stop waits for an exit after SIGTERM.
	StopTimeout = 20 * time.Second
)

// Command is a child process that Run runs to completion.
type Command struct {
	Name string
	Args []string
	// Env is the whole environment; nil is ChildEnv(), never this
	// process's own.
	Env   []string
	Dir   string // the working directory; "" is the test's
	Stdin string
}

// Result is what a child process printed and its exit status.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs c, waiting at most CommandTimeout. A non-zero exit is returned
// in Result.Code, not failed on; a command that cannot start or does not
// exit in time fails the test.
func Run(t testing.TB, c Command) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = ChildEnv()
	}
	cmd.Dir = c.Dir
	cmd.Stdin = strings.NewReader(c.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: no exit within %s\nstdout: %s\nstderr: %s", c.Name, strings.Join(RedactArgs(c.Args), " "), CommandTimeout, res.Stdout, res.Stderr)
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", c.Name, err)
	}
	return res
}

// RedactArgs returns args with every passport (a compact JWS, alone or
// after "agent:") replaced, to keep them out of failure messages.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Count(a, ".") == 2 && len(a) > 100 || strings.Contains(a, ":ey") {
			a = "[passport]"
		}
		out[i] = a
	}
	return out
}

// CLI runs the stack binary against one data directory.
type CLI struct {
	Bin  string   // the binary BuildStack made
	Home string   // the data directory, passed as --home
	Env  []string // the whole environment; nil is ChildEnv()
	Dir  string   // the working directory; "" is the test's
}

// Run runs `stack --home Home args...` with stdin; a non-zero exit is
// returned, not failed on.
func (c CLI) Run(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	return Run(t, Command{
		Name:  c.Bin,
		Args:  append([]string{"--home", c.Home}, args...),
		Env:   c.Env,
		Dir:   c.Dir,
		Stdin: stdin,
	})
}

// Must runs stack like Run and fails the test unless it exits 0; it
// returns stdout.
func (c CLI) Must(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := c.Run(t, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("stack %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(RedactArgs(args), " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

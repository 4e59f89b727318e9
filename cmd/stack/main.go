// Command stack is the STACK sidecar and its command-line interface: one
// binary that runs the proxy and manages passports, the vault and the
// audit log.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses shared by every command.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed or a check did not pass
	exitUsage   = 2 // bad flags, arguments or configuration
)

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// The logger and the commands both write to stderr, from several
	// goroutines in the proxy.
	stderr = &lockedWriter{w: stderr}
	a := newApp(stdin, stdout, stderr)
	defer a.close()
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "stack: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "stack: "+err.Error())
	var ue *usageErr
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// usageErr marks an error as the caller's mistake (exit status 2).
type usageErr struct{ err error }

func (e *usageErr) Error() string { return e.err.Error() }
func (e *usageErr) Unwrap() error { return e.err }

// usageError wraps err so that the command exits with status 2.
func usageError(err error) error {
	if err == nil {
		return nil
	}
	return &usageErr{err}
}

// exitError ends a command with a given status and an optional message,
// for checks that fail without an error (verify) or special statuses
// (detect scan exits 3 when content is flagged).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// exitWith returns an error that makes run return code, printing msg when
// it is not empty.
func exitWith(code int, msg string) error { return &exitError{code: code, msg: msg} }

// isCobraUsage recognises cobra's own argument errors, which it does not
// type.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument", "required flag", "if any flags in the group"} {
		if strings.HasPrefix(s, p) || strings.Contains(s, p) {
			return true
		}
	}
	return false
}

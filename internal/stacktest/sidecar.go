package stacktest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RunFile is the file, in the data directory, where a running `stack
// proxy` says where it listens.
const RunFile = "proxy.json"

// Info is what a running proxy wrote to its run file.
type Info struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"` // the proxy listener, host:port
	Admin  string `json:"admin"`  // the admin listener, host:port
	Home   string `json:"home"`   // the data directory
}

// Sidecar is a running `stack proxy` child process. Its Info holds the
// addresses it listens on.
type Sidecar struct {
	Info

	cmd      *exec.Cmd
	home     string
	logPath  string
	done     chan struct{} // closed once the process has exited
	waitErr  error         // the exit, set before done is closed
	stopOnce sync.Once
}

// StartSidecar starts `stack --home home proxy` with ephemeral loopback
// listeners, then args, and waits (at most StartTimeout) for the run file
// it writes. env is the whole environment; nil is ChildEnv(). The
// process's output goes to a log kept for failure messages (Log). It is
// stopped with Stop at the end of the test, and must then exit 0.
func StartSidecar(t testing.TB, bin, home string, env []string, args ...string) *Sidecar {
	t.Helper()
	if env == nil {
		env = ChildEnv()
	}
	dir := t.TempDir()
	s := &Sidecar{home: home, logPath: filepath.Join(dir, "proxy.log"), done: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{
		"--home", home, "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
	}, args...)
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Env = env
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	t.Cleanup(func() { s.Stop(t) })

	runFile := filepath.Join(home, RunFile)
	deadline := time.After(StartTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			t.Fatalf("stack proxy exited during start-up: %v\n%s", s.waitErr, s.Log())
		case <-deadline:
			t.Fatalf("stack proxy wrote no %s within %s\n%s", runFile, StartTimeout, s.Log())
		case <-tick.C:
		}
		b, err := os.ReadFile(runFile)
		if err != nil {
			continue
		}
		var info Info
		if json.Unmarshal(b, &info) != nil || info.PID != s.cmd.Process.Pid {
			continue // partly written, or left by an earlier process
		}
		if info.Home != home {
			t.Fatalf("%s names home %q, want %q", RunFile, info.Home, home)
		}
		s.Info = info
		return s
	}
}

// Stop sends SIGTERM and waits (at most StopTimeout) for a graceful exit:
// status 0, with the run file removed. It is idempotent; only the first
// call checks.
func (s *Sidecar) Stop(t testing.TB) {
	t.Helper()
	s.stopOnce.Do(func() {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("SIGTERM: %v", err)
		}
		select {
		case <-s.done:
		case <-time.After(StopTimeout):
			s.cmd.Process.Kill()
			<-s.done
			t.Errorf("stack proxy did not exit within %s of SIGTERM\n%s", StopTimeout, s.Log())
			return
		}
		if s.waitErr != nil {
			t.Errorf("stack proxy exit after SIGTERM: %v (want status 0)\n%s", s.waitErr, s.Log())
		}
		if _, err := os.Stat(filepath.Join(s.home, RunFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after a graceful stop (stat: %v)", RunFile, err)
		}
	})
}

// Log returns what the process has printed so far.
func (s *Sidecar) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

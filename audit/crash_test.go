package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// crashChildEnv, when set to a path, turns the test binary into the child
// of TestCrashKeepsAcknowledgedRecords: it appends to that log forever and
// prints every acknowledged seq on its own line.
const crashChildEnv = "STACK_AUDIT_CRASH_CHILD"

// crashSyncEnv names the child's sync policy ("interval" or "always").
const crashSyncEnv = "STACK_AUDIT_CRASH_SYNC"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	goleak.VerifyTestMain(m)
}

func crashChild(path string) int {
	signer, _, err := fixedKey(7)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	policy, err := ParseSyncPolicy(os.Getenv(crashSyncEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := Open(path, Options{Signer: signer, CheckpointEvery: 50, Sync: policy})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq, err := l.Append(context.Background(), Record{AgentID: "crash", Action: ActionRequest})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				// One write per line, unbuffered: a line the parent reads
				// whole was printed after Append returned.
				os.Stdout.WriteString(strconv.FormatUint(seq, 10) + "\n")
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "audit.db")
	// A record is acknowledged once written (interval) or once synced
	// (always); a killed process must lose neither.
	for round, policy := range []SyncPolicy{SyncInterval, SyncAlways, SyncInterval} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashSyncEnv+"="+policy.String())
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[uint64]bool{}
		sc := bufio.NewScanner(out)
		for len(acked) < 3000 && sc.Scan() {
			seq, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			acked[seq] = true
		}
		// Kill mid-stream, with appends in flight.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Lines already printed before the kill are acknowledged too.
		for sc.Scan() {
			if seq, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
				acked[seq] = true
			}
		}
		cmd.Wait()
		if len(acked) < 3000 {
			t.Fatalf("child acknowledged only %d appends", len(acked))
		}

		signer, verifiers, err := fixedKey(7)
		if err != nil {
			t.Fatal(err)
		}
		// A reader sees the file as the crash left it, short of what the
		// journal holds; the next writer (the restarted sidecar) moves
		// that in, with its checkpoints, before anything else.
		if rl, err := Open(path, Options{ReadOnly: true}); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("round %d: %d acknowledged records in the journal after the kill", round, rl.JournalPending())
			rl.Close()
		}
		wl, err := Open(path, Options{Signer: signer, CheckpointEvery: 50})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		if err := wl.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyFile(context.Background(), path, verifiers)
		if err != nil {
			t.Fatalf("round %d: log does not verify after SIGKILL: %v", round, err)
		}
		l, err := Open(path, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		for seq := range acked {
			if _, ok, err := l.Get(seq); !ok || err != nil {
				t.Fatalf("round %d: acknowledged seq %d lost (ok=%v err=%v)", round, seq, ok, err)
			}
		}
		l.Close()
		t.Logf("round %d: %d acknowledged, %d records present, %d checkpoints", round, len(acked), rep.Records, rep.Checkpoints)
	}
}

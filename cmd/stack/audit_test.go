package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/config"
)

// auditTestClock is the time the test logs start at.
var auditTestClock = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// seedAudit writes n records to the data directory's audit log, one minute
// apart, alternating agents billing-bot and other-bot, with checkpoints
// every 5 records signed by the issuer key, as the proxy would.
func seedAudit(t *testing.T, home string, n int) string {
	t.Helper()
	ctx := context.Background()
	a := newApp(nil, io.Discard, io.Discard)
	cfg, err := config.Load(config.LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	a.cfg = cfg
	defer a.close()
	signer, err := a.auditSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := auditTestClock
	l, err := audit.Open(cfg.Audit.Path, audit.Options{Signer: signer, CheckpointEvery: 5, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 1; i <= n; i++ {
		r := audit.Record{AgentID: "billing-bot", Action: audit.ActionCredentialAccess, CredentialID: "stripe",
			Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Status: 200}
		if i%2 == 0 {
			r = audit.Record{AgentID: "other-bot", Action: audit.ActionRequestDenied, Host: "evil.example",
				Method: "GET", Path: "/", Status: 403, Reason: "scope_denied"}
		}
		if i == n {
			r = audit.Record{AgentID: "billing-bot", Action: audit.ActionDetectorFired, Detector: "credential_burst",
				Severity: "critical", Detail: "12x baseline", CredentialID: "stripe", Host: "api.stripe.com"}
		}
		if _, err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
	}
	return cfg.Audit.Path
}

func withAuditNow(t *testing.T, now time.Time) {
	old := auditNow
	auditNow = func() time.Time { return now }
	t.Cleanup(func() { auditNow = old })
}

func TestAuditVerifyOK(t *testing.T) {
	home := initHome(t)
	seedAudit(t, home, 12)
	code, out, errs := runStack(t, home, "", "audit", "verify")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	// The log was closed cleanly: its last checkpoint covers every record.
	for _, want := range []string{"records:         12 (seq 1..12)", "head:            ", "last checkpoint: size 12", "signature verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "warning") {
		t.Errorf("warning for a cleanly closed log:\n%s", out)
	}
}

// Records after the last checkpoint verify, with a warning that counts
// them.
func TestAuditVerifyWarnsOfUncoveredTail(t *testing.T) {
	home := initHome(t)
	path := seedAudit(t, home, 12)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("checkpoints")).Delete(seqKey(12)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, errs := runStack(t, home, "", "audit", "verify")
	want := "warning:         2 records after the last checkpoint (seq 11..12) are not covered by a signature"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "last checkpoint: size 10") {
		t.Fatalf("exit %d, want 0 with %q\nstdout: %s\nstderr: %s", code, want, out, errs)
	}
}

// A sidecar stopped cleanly leaves its whole log under a signed checkpoint.
func TestSidecarStopSignsAuditTail(t *testing.T) {
	home := initHome(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--home", home, "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
			strings.NewReader(""), io.Discard, &errb)
	}()
	var info runInfo
	for info.Listen == "" {
		select {
		case code := <-done:
			t.Fatalf("proxy exited %d: %s", code, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if b, err := os.ReadFile(filepath.Join(home, runFile)); err == nil {
			_ = json.Unmarshal(b, &info)
		}
	}
	proxyURL, _ := url.Parse("http://" + info.Listen)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	for range 3 {
		req, _ := http.NewRequest("GET", "http://internal.example.net/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("proxy exited %d: %s", code, errb.String())
	}
	code, out, errs := runStack(t, home, "", "audit", "verify")
	if code != 0 || !strings.Contains(out, "records:         3 (seq 1..3)") || !strings.Contains(out, "last checkpoint: size 3") || strings.Contains(out, "warning") {
		t.Fatalf("verify after a clean stop: exit %d\n%s\n%s", code, out, errs)
	}
}

func TestAuditVerifyNamesTamperedRecord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(b *bolt.Bucket) error
		want   string
	}{
		{"deleted", func(b *bolt.Bucket) error { return b.Delete(seqKey(7)) }, "FAIL seq 7: missing"},
		{"swapped", func(b *bolt.Bucket) error {
			x, y := bytes.Clone(b.Get(seqKey(3))), bytes.Clone(b.Get(seqKey(4)))
			if err := b.Put(seqKey(3), y); err != nil {
				return err
			}
			return b.Put(seqKey(4), x)
		}, "FAIL seq 3: out_of_order"},
		{"modified", func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seqKey(5)))
			v[len(v)-40] ^= 1
			return b.Put(seqKey(5), v)
		}, "FAIL seq 5: modified"},
		{"cut", func(b *bolt.Bucket) error {
			for s := uint64(9); s <= 12; s++ {
				if err := b.Delete(seqKey(s)); err != nil {
					return err
				}
			}
			return nil
		}, "FAIL seq 9: cut_after_checkpoint: cut after checkpoint 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := initHome(t)
			path := seedAudit(t, home, 12)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return tc.tamper(tx.Bucket([]byte("records"))) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			code, out, errs := runStack(t, home, "", "audit", "verify", "--db", path)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 1 with %q\nstdout: %s\nstderr: %s", code, tc.want, out, errs)
			}
		})
	}
}

func seqKey(s uint64) []byte {
	return []byte{byte(s >> 56), byte(s >> 48), byte(s >> 40), byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
}

func TestAuditVerifyMissingFile(t *testing.T) {
	home := initHome(t)
	code, _, errs := runStack(t, home, "", "audit", "verify", "--db", filepath.Join(home, "nope.db"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestAuditTail(t *testing.T) {
	home := initHome(t)
	seedAudit(t, home, 12)
	code, out, errs := runStack(t, home, "", "audit", "tail", "-n", "2", "--agent", "billing-bot")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "11 ") || !strings.HasPrefix(lines[1], "12 ") ||
		!strings.Contains(lines[1], "detector_fired billing-bot") || !strings.Contains(lines[1], `detail=12x baseline`) {
		t.Fatalf("tail output:\n%s", out)
	}
	code, out, _ = runStack(t, home, "", "audit", "tail", "-n", "1", "--action", "request_denied", "--json")
	var r audit.Record
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Seq != 10 || r.Reason != "scope_denied" {
		t.Fatalf("tail --json: exit %d %q", code, out)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditTailFollow(t *testing.T) {
	home := initHome(t)
	path := seedAudit(t, home, 3)
	old := auditPollInterval
	auditPollInterval = 5 * time.Millisecond
	t.Cleanup(func() { auditPollInterval = old })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--home", home, "audit", "tail", "-f", "-n", "1", "--agent", "billing-bot"}, nil, &out, &errb)
	}()
	waitFor := func(want string) {
		t.Helper()
		for !strings.Contains(out.String(), want) {
			select {
			case code := <-done:
				t.Fatalf("tail -f exited %d before printing %q: %s %s", code, want, out.String(), errb.String())
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitFor("3 2026-11-25T12:02:00.000Z")
	// The follower holds the file only while it reads; a writer gets in
	// between polls.
	l, err := audit.Open(path, audit.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, audit.Record{AgentID: "other-bot", Action: "request"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, audit.Record{AgentID: "billing-bot", Action: "request", Host: "late.example"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	waitFor("5 ")
	waitFor("host=late.example")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f exit %d after interrupt: %s", code, errb.String())
	}
	if strings.Contains(out.String(), "other-bot") {
		t.Fatalf("filter let another agent through:\n%s", out.String())
	}
}

func TestAuditExport(t *testing.T) {
	home := initHome(t)
	seedAudit(t, home, 12)
	withAuditNow(t, auditTestClock.Add(12*time.Minute))
	// The last 3 minutes: records 10, 11, 12.
	code, out, errs := runStack(t, home, "", "audit", "export", "--format", "jsonl", "--since", "3m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got:\n%s", out)
	}
	for i, line := range lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Seq != uint64(10+i) || r.Hash == (audit.Hash{}) {
			t.Fatalf("line %d: %v %+v", i, err, r)
		}
	}
	code, out, _ = runStack(t, home, "", "audit", "export", "--since", "2026-11-25T12:10:30Z", "--agent", "billing-bot")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"seq":12`) {
		t.Fatalf("export since RFC 3339: exit %d\n%s", code, out)
	}
	if code, _, _ := runStack(t, home, "", "audit", "export", "--format", "csv"); code != 2 {
		t.Fatalf("--format csv exit %d, want 2", code)
	}
	if code, _, _ := runStack(t, home, "", "audit", "export", "--since", "yesterday"); code != 2 {
		t.Fatalf("bad --since exit %d, want 2", code)
	}
}

func TestAuditTimeline(t *testing.T) {
	home := initHome(t)
	seedAudit(t, home, 12)
	code, out, errs := runStack(t, home, "", "audit", "timeline", "--agent", "billing-bot")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 { // header, records 1, 3, 5, 7, 9, 11 and 12
		t.Fatalf("timeline:\n%s", out)
	}
	for _, want := range []string{"TIME", "OUTCOME", "2026-11-25T12:00:00.000Z", "credential_access", "POST api.stripe.com/v1/charges", "allowed 200",
		"detector_fired", "credential_burst", `critical "12x baseline"`} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "other-bot") || strings.Contains(out, "evil.example") {
		t.Errorf("timeline shows another agent:\n%s", out)
	}
	if code, _, _ := runStack(t, home, "", "audit", "timeline"); code != 2 {
		t.Fatalf("timeline without --agent exit %d, want 2", code)
	}
}

func TestAuditPrune(t *testing.T) {
	home := initHome(t)
	seedAudit(t, home, 12)
	code, out, errs := runStack(t, home, "", "audit", "prune", "--before", "2026-11-25T12:06:00Z")
	if code != 0 || !strings.Contains(out, "pruned 6 records") {
		t.Fatalf("prune: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runStack(t, home, "", "audit", "verify")
	if code != 0 || !strings.Contains(out, "records:         6 (seq 7..12)") || !strings.Contains(out, "pruned:          records up to seq 6") {
		t.Fatalf("verify after prune: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, _ := runStack(t, home, "", "audit", "prune"); code != 2 {
		t.Fatalf("prune without --before exit %d, want 2", code)
	}
}

func TestAuditLockedFileFailsFast(t *testing.T) {
	home := initHome(t)
	path := seedAudit(t, home, 2)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errs := runStack(t, home, "", "audit", "verify")
	if code != 1 || !strings.Contains(errs, "running proxy") {
		t.Fatalf("verify of a held file: exit %d: %s", code, errs)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-11-20T08:00:00Z":      time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC),
		"2026-11-20T08:00:00+01:00": time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "3x", "2026-11-20"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) succeeded", bad)
		}
	}
}

func TestAuditHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"verify", "tail", "export", "timeline", "prune"} {
		var out bytes.Buffer
		code := run(context.Background(), []string{"audit", sub, "--help"}, nil, &out, io.Discard)
		if code != 0 || !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "stack audit "+sub) {
			t.Errorf("audit %s --help: exit %d\n%s", sub, code, out.String())
		}
	}
}

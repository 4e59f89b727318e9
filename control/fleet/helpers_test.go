package fleet

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleetlog"
)

// fixture is a witness over a real fleet log in a temporary directory.
type fixture struct {
	t        testing.TB
	dir      string
	tree     *fleetlog.Log
	w        *Witness
	key      string // the fleet log's verifier key
	signer   note.Signer
	mu       sync.Mutex
	findings []Finding
	// committed are what OnCommitted was told, in order.
	committed []Item
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, fleetlog.DefaultOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: t.TempDir(), key: vkey, signer: signer}
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	ctx := context.Background()
	tree, err := fleetlog.Open(ctx, fleetlog.Options{Dir: filepath.Join(f.dir, "log"), Signer: f.signer, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	w, err := Open(ctx, Options{Dir: f.dir, Tree: tree, Signer: f.signer, OnFinding: func(_ Stream, fd Finding) {
		f.mu.Lock()
		f.findings = append(f.findings, fd)
		f.mu.Unlock()
	}, OnCommitted: func(items []Item) {
		f.mu.Lock()
		f.committed = append(f.committed, items...)
		f.mu.Unlock()
	}})
	if err != nil {
		tree.Close(ctx)
		f.t.Fatal(err)
	}
	f.tree, f.w = tree, w
}

func (f *fixture) close() {
	if f.w == nil {
		return
	}
	f.w.Close()
	f.tree.Close(context.Background())
	f.w, f.tree = nil, nil
}

func (f *fixture) reopen() {
	f.close()
	f.open()
}

func (f *fixture) size() uint64 {
	f.t.Helper()
	n, err := f.tree.Size(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// sidecarLog is a real sidecar audit log with its checkpoint key.
type sidecarLog struct {
	t    testing.TB
	log  *audit.Log
	path string
	key  string
}

func newSidecarLog(t testing.TB, every int) *sidecarLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stack-audit")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{Signer: signer, CheckpointEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &sidecarLog{t: t, log: l, path: path, key: vkey}
}

func (s *sidecarLog) append(n int, agent string) {
	s.t.Helper()
	for i := 0; i < n; i++ {
		if _, err := s.log.Append(context.Background(), audit.Record{
			AgentID: agent, Action: audit.ActionCredentialAccess, CredentialID: "stripe",
			Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Status: 200,
		}); err != nil {
			s.t.Fatal(err)
		}
	}
}

// batch reads records [from, to] and the checkpoints among them, as a
// shipper does.
func (s *sidecarLog) batch(from, to uint64) Batch {
	s.t.Helper()
	ctx := context.Background()
	head, _ := s.log.Head()
	b := Batch{Log: s.log.ID(), Key: s.key, Head: head}
	if _, err := s.log.ScanStored(ctx, from, func(seq uint64, v []byte) error {
		if seq > to {
			return audit.ErrStop
		}
		b.Records = append(b.Records, v)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := s.log.ScanCheckpoints(ctx, from, to, func(_ uint64, n []byte) error {
		b.Checkpoints = append(b.Checkpoints, n)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	return b
}

var alice = Shipper{Sidecar: "sc-alice", Agent: "alice"}

func farFuture() time.Time { return time.Now().Add(24 * time.Hour) }

package control_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/control/fleetlog"
)

// withFleet serves the fleet audit log: a real witness over a real
// tessera log in a temporary directory, findings reported to the server.
func withFleet(t *testing.T, revoke bool) (func(*control.Options), *fleetParts) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, fleetlog.DefaultOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	tree, err := fleetlog.Open(ctx, fleetlog.Options{Dir: filepath.Join(dir, "log"), Signer: signer, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fp := &fleetParts{key: vkey, tree: tree}
	w, err := fleet.Open(ctx, fleet.Options{Dir: dir, Tree: tree, Signer: signer, OnFinding: func(st fleet.Stream, fd fleet.Finding) {
		fp.srv.AuditIntegrity(st, fd)
	}})
	if err != nil {
		t.Fatal(err)
	}
	fp.w = w
	t.Cleanup(func() {
		w.Close()
		tree.Close(context.Background())
	})
	return func(o *control.Options) {
		o.Fleet, o.FleetLog, o.FleetKey, o.FleetOrigin = w, tree, vkey, fleetlog.DefaultOrigin
		o.FleetSize = func(ck []byte) (uint64, error) {
			c, err := fleetlog.ParseCheckpoint(vkey, ck)
			return c.Size, err
		}
		o.RevokeOnIntegrity = revoke
	}, fp
}

type fleetParts struct {
	srv  *control.Server
	w    *fleet.Witness
	tree *fleetlog.Log
	key  string
}

// sidecarAudit is a sidecar's real audit log, checkpoints every 100.
type sidecarAudit struct {
	t    *testing.T
	path string
	log  *audit.Log
	skey string
	key  string
	n    int
}

func newSidecarAudit(t *testing.T) *sidecarAudit {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "stack-audit")
	if err != nil {
		t.Fatal(err)
	}
	a := &sidecarAudit{t: t, path: filepath.Join(t.TempDir(), "audit.db"), skey: skey, key: vkey}
	a.open()
	t.Cleanup(func() {
		if a.log != nil {
			a.log.Close()
		}
	})
	return a
}

func (a *sidecarAudit) open() {
	a.t.Helper()
	signer, err := note.NewSigner(a.skey)
	if err != nil {
		a.t.Fatal(err)
	}
	l, err := audit.Open(a.path, audit.Options{Signer: signer, CheckpointEvery: 100})
	if err != nil {
		a.t.Fatal(err)
	}
	a.log = l
}

func (a *sidecarAudit) close() {
	a.t.Helper()
	if err := a.log.Close(); err != nil {
		a.t.Fatal(err)
	}
	a.log = nil
}

func (a *sidecarAudit) append(n int, agent string) {
	a.t.Helper()
	for range n {
		a.n++
		if _, err := a.log.Append(context.Background(), audit.Record{
			AgentID: agent, Action: audit.ActionCredentialAccess, CredentialID: "example",
			Host: "api.example.com", Method: "GET", Path: fmt.Sprintf("/v1/items/%d", a.n), Status: 200,
		}); err != nil {
			a.t.Fatal(err)
		}
	}
}

// hashes returns every record's hash by event id, read from the file.
func (a *sidecarAudit) hashes() map[string]audit.Hash {
	a.t.Helper()
	out := map[string]audit.Hash{}
	if _, err := a.log.ScanStored(context.Background(), 0, func(_ uint64, v []byte) error {
		r, err := audit.DecodeStored(v)
		out[r.EventID] = r.Hash
		return err
	}); err != nil {
		a.t.Fatal(err)
	}
	return out
}

// edit changes the closed log's file as a host with write access can.
func (a *sidecarAudit) edit(fn func(records, checkpoints *bolt.Bucket) error) {
	a.t.Helper()
	db, err := bolt.Open(a.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		a.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket([]byte("records")), tx.Bucket([]byte("checkpoints")))
	}); err != nil {
		a.t.Fatal(err)
	}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func ship(t *testing.T, ctx context.Context, s *sidecar, a *sidecarAudit) *client.Shipper {
	t.Helper()
	sh, err := s.ShipAudit(ctx, client.ShipOptions{Log: a.log, Key: a.key, Batch: 100, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// export reads the fleet export for agent as the CLI does.
func (f *fixture) export(agent string) []fleet.Item {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.ts.URL+control.PathFleetExport+"?agent="+url.QueryEscape(agent), nil)
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		f.t.Fatalf("export: %d %s", resp.StatusCode, b)
	}
	var out []fleet.Item
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var it fleet.Item
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil || it.Record.EventID == "" {
			f.t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		out = append(out, it)
	}
	return out
}

func TestSidecarShipsItsAuditLog(t *testing.T) {
	tune, fp := withFleet(t, false)
	f := newFixture(t, tune)
	fp.srv = f.srv
	f.register("alice")
	proxy := faultProxy(t, strings.TrimPrefix(f.ts.URL, "https://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, "https://"+proxy.Listen, "alice", "", nil)
	a := newSidecarAudit(t)
	a.append(250, "alice")
	sctx, stop := context.WithCancel(ctx)
	sh := ship(t, sctx, s, a)
	eventually(t, "250 records acknowledged", func() bool { return sh.Status().Acked == 250 })
	if n, age := sh.Lag(); n != 0 || age != 0 {
		t.Fatalf("lag %d records, %s after everything was acknowledged", n, age)
	}
	if seq, ok, err := a.log.Shipped(); err != nil || !ok || seq != 250 {
		t.Fatalf("shipped mark %d %v %v, want 250", seq, ok, err)
	}

	// The control plane away: the log is the buffer, then it catches up.
	proxy.Stop()
	a.append(300, "alice")
	time.Sleep(200 * time.Millisecond)
	if n, _ := sh.Lag(); n != 300 {
		t.Fatalf("lag while away: %d records, want 300", n)
	}
	if sh.Status().Acked != 250 || sh.Status().Err == "" {
		t.Fatalf("status while away: %+v", sh.Status())
	}
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "caught up after the outage", func() bool { return sh.Status().Acked == 550 })

	// A restart re-sends everything once: nothing is appended twice.
	stop()
	<-sh.Done()
	before, err := fp.tree.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sh = ship(t, ctx, s, a)
	eventually(t, "re-verified after restart", func() bool { return sh.Status().Verified })
	if after, _ := fp.tree.Size(ctx); after != before {
		t.Fatalf("a restart's re-sent records grew the fleet log from %d to %d leaves", before, after)
	}

	// The fleet log holds exactly the sidecar's records.
	got := f.export("alice")
	want := a.hashes()
	if len(got) != len(want) {
		t.Fatalf("fleet export has %d records, the sidecar's file %d", len(got), len(want))
	}
	for i, it := range got {
		if want[it.Record.EventID] != it.Record.Hash {
			t.Fatalf("fleet record %s: hash differs from the sidecar's", it.Record.EventID)
		}
		if i > 0 && it.Record.TimestampMS < got[i-1].Record.TimestampMS {
			t.Fatal("export is not ordered by time")
		}
	}

	// A proof checks offline with the public key alone.
	var key control.FleetKeyResponse
	f.must("", http.MethodGet, control.PathFleetKey, nil, &key)
	var p fleet.Proof
	f.must(operatorToken, http.MethodGet, control.PathFleetProve+"?event="+got[123].Record.EventID, nil, &p)
	if r, err := fleet.VerifyProof(key.Key, p); err != nil || r.EventID != got[123].Record.EventID {
		t.Fatalf("proof: %v", err)
	}
	forged := p
	forged.Item.Record.Path = "/v1/forged"
	if _, err := fleet.VerifyProof(key.Key, forged); err == nil {
		t.Fatal("a proof showing another record than its leaf's verified")
	}
	forged = p
	forged.Leaf = append([]byte(nil), p.Leaf...)
	forged.Leaf[len(forged.Leaf)/2] ^= 1
	if _, err := fleet.VerifyProof(key.Key, forged); err == nil {
		t.Fatal("a proof of a changed leaf verified")
	}
	var ck string
	f.must(operatorToken, http.MethodGet, control.PathFleetCheckpoint, nil, &ck)
	a.append(10, "alice")
	eventually(t, "10 more acknowledged", func() bool { return sh.Status().Acked == 560 })
	c0, err := fleetlog.ParseCheckpoint(key.Key, []byte(ck))
	if err != nil {
		t.Fatal(err)
	}
	var cons fleet.Consistency
	eventually(t, "a newer checkpoint", func() bool {
		f.must(operatorToken, http.MethodGet, fmt.Sprintf("%s?from=%d", control.PathFleetConsistency, c0.Size), nil, &cons)
		return cons.To > c0.Size
	})
	if _, err := fleet.VerifyConsistency(key.Key, []byte(ck), cons); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	body := scrape(t, f)
	for _, m := range []string{"stack_control_audit_records_received_total", `stack_control_audit_lag_records{agent="alice"`} {
		if !strings.Contains(body, m) {
			t.Fatalf("metrics lack %s", m)
		}
	}
}

func scrape(t *testing.T, f *fixture) string {
	t.Helper()
	resp, err := f.client.Get(f.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTamperedSidecarLogIsReported changes a shipped sidecar log while
// the sidecar is down, as a host with write access to its file can, and
// restarts it: the control plane reports the first bad seq and merges
// nothing.
func TestTamperedSidecarLogIsReported(t *testing.T) {
	cases := []struct {
		name string
		kind string
		seq  uint64
		edit func(t *testing.T, a *sidecarAudit)
	}{
		{"flip a byte", fleet.KindCorrupt, 137, func(t *testing.T, a *sidecarAudit) {
			a.edit(func(recs, _ *bolt.Bucket) error {
				v := append([]byte(nil), recs.Get(seqKey(137))...)
				i := strings.Index(string(v), "/v1/items/137")
				v[i+4] ^= 0x01 // "items" becomes "htems"
				return recs.Put(seqKey(137), v)
			})
		}},
		{"cut the tail past the last checkpoint", fleet.KindTruncation, 201, func(t *testing.T, a *sidecarAudit) {
			// The checkpoint the clean stop wrote at 250 goes too: the file
			// ends at its checkpoint of 200 and verifies on its own.
			a.edit(func(recs, cks *bolt.Bucket) error {
				for seq := uint64(201); seq <= 250; seq++ {
					if err := recs.Delete(seqKey(seq)); err != nil {
						return err
					}
					if err := cks.Delete(seqKey(seq)); err != nil {
						return err
					}
				}
				return nil
			})
			verifier, _ := note.NewVerifier(a.key)
			if _, err := audit.VerifyFile(context.Background(), a.path, note.VerifierList(verifier)); err != nil {
				t.Fatalf("the cut file does not verify on its own, the case proves less: %v", err)
			}
		}},
		{"rewrite and re-hash the whole chain", fleet.KindFork, 1, func(t *testing.T, a *sidecarAudit) {
			signer, err := note.NewSigner(a.skey)
			if err != nil {
				t.Fatal(err)
			}
			a.edit(func(recs, cks *bolt.Bucket) error {
				prev := audit.GenesisHash
				for seq := uint64(1); seq <= 250; seq++ {
					r, err := audit.DecodeStored(recs.Get(seqKey(seq)))
					if err != nil {
						return err
					}
					r.Host, r.PrevHash = "innocent.example", prev
					if err := recs.Put(seqKey(seq), audit.EncodeStored(&r)); err != nil {
						return err
					}
					prev = r.Hash
					// The checkpoints re-signed too, with the sidecar's own
					// key: the file verifies on its own.
					if v := cks.Get(seqKey(seq)); v != nil {
						old, err := audit.ParseCheckpoint(v, nil)
						if err != nil {
							return err
						}
						text := fmt.Sprintf("%s\n%d\n%s\n%d\n", audit.CheckpointOrigin, seq, base64Hash(r.Hash), old.Time.UnixMilli())
						msg, err := note.Sign(&note.Note{Text: text}, signer)
						if err != nil {
							return err
						}
						if err := cks.Put(seqKey(seq), msg); err != nil {
							return err
						}
					}
				}
				return nil
			})
			verifier, _ := note.NewVerifier(a.key)
			if _, err := audit.VerifyFile(context.Background(), a.path, note.VerifierList(verifier)); err != nil {
				t.Fatalf("the rewritten file does not verify on its own, the case proves less: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tune, fp := withFleet(t, true)
			f := newFixture(t, tune)
			fp.srv = f.srv
			f.register("alice")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := f.startSidecar(ctx, f.ts.URL, "alice", "", nil)
			a := newSidecarAudit(t)
			a.append(250, "alice")
			sctx, stop := context.WithCancel(ctx)
			sh := ship(t, sctx, s, a)
			eventually(t, "shipped", func() bool { return sh.Status().Acked == 250 })
			stop()
			<-sh.Done()
			size, _ := fp.tree.Size(ctx)

			a.close()
			tc.edit(t, a)
			a.open()
			sh = ship(t, ctx, s, a)
			eventually(t, "refused", func() bool { return sh.Status().Refused != "" })
			want := fmt.Sprintf("%s at %d", tc.kind, tc.seq)
			var st control.AuditStream
			for _, x := range fp.w.Streams() {
				if x.Log == a.log.ID() {
					st = x
				}
			}
			if st.Finding == nil || st.Finding.Kind != tc.kind || st.Finding.Seq != tc.seq {
				t.Fatalf("finding %+v, want %s (refusal: %s)", st.Finding, want, sh.Status().Refused)
			}
			if after, _ := fp.tree.Size(ctx); after != size {
				t.Fatalf("the fleet log grew from %d to %d leaves on a refused batch", size, after)
			}
			if st.Next != 251 {
				t.Fatalf("the stream moved to %d", st.Next)
			}
			recs := f.audit.actions(control.ActionAuditIntegrity)
			if len(recs) != 1 || !strings.Contains(recs[0].Detail, fmt.Sprintf("%s at seq %d", tc.kind, tc.seq)) {
				t.Fatalf("control plane audit records: %+v", recs)
			}
			// The policy revokes the agent; its sidecar learns it.
			eventually(t, "agent revoked", func() bool { return s.Health().Revoked != "" })
			// The refused records stay in the sidecar's log.
			if seq, _, _ := a.log.Shipped(); seq != 250 {
				t.Fatalf("shipped mark moved to %d", seq)
			}
		})
	}
}

func base64Hash(h audit.Hash) string {
	return base64.StdEncoding.EncodeToString(h[:])
}

package passport

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/internal/testclock"
)

func openStore(t *testing.T, path string, clk *testclock.Clock) *RevocationStore {
	t.Helper()
	s, err := OpenRevocationStore(path, RevocationOptions{Now: clk.Now, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRevocationPersistsAcrossReopen(t *testing.T) {
	clk := testclock.Start()
	path := filepath.Join(t.TempDir(), "revocations.db")
	s := openStore(t, path, clk)
	issued := clk.Now()
	if _, err := s.RevokeJTI("jti-1", clk.Now().Add(10*time.Minute), "leaked"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := s.RevokeAgent("agent-1", "burst"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Add(Revocation{Kind: RevokeJTI, ID: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: err = %v, want ErrClosed", err)
	}

	s = openStore(t, path, clk)
	cases := []struct {
		name string
		q    RevocationQuery
		want bool
	}{
		{"revoked jti", RevocationQuery{JTI: "jti-1", Agent: "other", IssuedAt: issued}, true},
		{"revoked ancestor", RevocationQuery{JTI: "child", Chain: []string{"root", "jti-1"}, Agent: "other", IssuedAt: issued}, true},
		{"agent, issued before", RevocationQuery{JTI: "j2", Agent: "agent-1", IssuedAt: issued}, true},
		{"agent, issued the same second", RevocationQuery{JTI: "j3", Agent: "agent-1", IssuedAt: clk.Now()}, true},
		{"agent, issued after", RevocationQuery{JTI: "j4", Agent: "agent-1", IssuedAt: clk.Now().Add(time.Second)}, false},
		{"unrelated", RevocationQuery{JTI: "j5", Chain: []string{"root"}, Agent: "agent-2", IssuedAt: issued}, false},
	}
	for _, tc := range cases {
		if got := s.Revoked(tc.q); got != tc.want {
			t.Errorf("%s: Revoked = %v, want %v", tc.name, got, tc.want)
		}
	}
	list := s.List()
	if len(list) != 2 || list[0].Kind != RevokeAgent || list[0].Reason != "burst" || list[1].ID != "jti-1" {
		t.Fatalf("List = %+v", list)
	}
}

func TestRevocationExpiryPruning(t *testing.T) {
	clk := testclock.Start()
	path := filepath.Join(t.TempDir(), "revocations.db")
	s := openStore(t, path, clk)
	if _, err := s.RevokeJTI("short", clk.Now().Add(5*time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeJTI("unknown-exp", time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	r, err := s.RevokeAgent("agent-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(DefaultMaxTTL + DefaultLeeway); !r.ExpiresAt.Equal(want) {
		t.Fatalf("agent entry expires %s, want %s", r.ExpiresAt, want)
	}

	clk.Advance(5*time.Minute + DefaultLeeway - time.Second)
	if n, err := s.Prune(); err != nil || n != 0 {
		t.Fatalf("Prune before any expiry = %d, %v", n, err)
	}
	clk.Advance(time.Second)
	if n, err := s.Prune(); err != nil || n != 1 {
		t.Fatalf("Prune at exp+leeway = %d, %v; want 1", n, err)
	}
	if s.Revoked(RevocationQuery{JTI: "short"}) {
		t.Error("pruned jti still revoked")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Past MaxTTL+leeway everything is gone; reopening prunes it from the
	// file as well.
	clk.Advance(DefaultMaxTTL)
	s = openStore(t, path, clk)
	if got := s.List(); len(got) != 0 {
		t.Fatalf("after open at expiry: %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clk2 := testclock.Start() // back in time: the file must not have kept them
	s = openStore(t, path, clk2)
	if got := s.List(); len(got) != 0 {
		t.Fatalf("entries survived pruning in the file: %+v", got)
	}
}

func TestRevocationAddMerges(t *testing.T) {
	clk := testclock.Start()
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"), clk)
	early := clk.Now()
	late := early.Add(time.Minute)
	if err := s.Add(Revocation{Kind: RevokeAgent, ID: "a", RevokedAt: late, ExpiresAt: late.Add(time.Hour), Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	// An older update from a feed must not shrink the revocation.
	if err := s.Add(Revocation{Kind: RevokeAgent, ID: "a", RevokedAt: early, ExpiresAt: early.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got := s.List()[0]
	if !got.RevokedAt.Equal(late) || !got.ExpiresAt.Equal(late.Add(time.Hour)) || got.Reason != "first" {
		t.Fatalf("merged = %+v", got)
	}
	for _, bad := range []Revocation{{Kind: RevokeJTI}, {Kind: "user", ID: "x"}} {
		if err := s.Add(bad); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Add(%+v) = %v, want ErrInvalidRequest", bad, err)
		}
	}
}

func TestRevocationStoreLocked(t *testing.T) {
	clk := testclock.Start()
	path := filepath.Join(t.TempDir(), "revocations.db")
	_ = openStore(t, path, clk)
	_, err := OpenRevocationStore(path, RevocationOptions{Now: clk.Now, Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second open: err = %v, want ErrStoreLocked", err)
	}
}

func TestRevocationNotify(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "revocations.db"), testclock.Start())
	var got []Revocation
	s.Notify(func(r Revocation) { got = append(got, r) })
	if _, err := s.RevokeAgent("agent-a", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeJTI("jti-1", time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Revocation{Kind: "bogus", ID: "x"}); err == nil {
		t.Fatal("a bad revocation was accepted")
	}
	if len(got) != 2 || got[0].Kind != RevokeAgent || got[0].ID != "agent-a" || got[1].Kind != RevokeJTI || got[1].ID != "jti-1" {
		t.Fatalf("notified %+v, want the agent then the jti, and nothing for the refused one", got)
	}
}

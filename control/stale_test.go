package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/etcdtest"
	"github.com/stackctl/stack/internal/faultproxy"
	"github.com/stackctl/stack/passport"
)

// threeMemberEtcd runs a 3-member etcd cluster for the test and
// returns its client URLs.
func threeMemberEtcd(t *testing.T) []string { return etcdtest.Start(t, 3) }

// replicaOn starts a control plane on st with the shared keys and its
// store check running; both stop when the test ends.
func replicaOn(t *testing.T, st store.Store, keys *passport.KeySet, storeTimeout time.Duration) *fixture {
	t.Helper()
	f := newFixture(t, func(o *control.Options) {
		o.Store, o.Keys, o.StoreTimeout = st, keys, storeTimeout
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.CheckStore(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("CheckStore: %v", err)
		}
	})
	return f
}

// openEtcdStore opens the etcd store at endpoints under prefix until the
// test ends.
func openEtcdStore(t *testing.T, endpoints []string, prefix string) store.Store {
	t.Helper()
	st, err := store.OpenEtcd(t.Context(), store.EtcdOptions{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// feed is an open GET /v1/watch: its events as they come, and Ended once
// the stream has ended.
type feed struct {
	events chan control.WatchEvent
	ended  chan struct{}
}

// openFeed watches f's feed from rev with token; it fails the test unless
// the answer is 200.
func (f *fixture) openFeed(ctx context.Context, token string, rev int64) *feed {
	f.t.Helper()
	resp, err := f.getFeed(ctx, token, rev)
	if err != nil {
		f.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f.t.Fatalf("watch: %d %s", resp.StatusCode, b)
	}
	fd := &feed{events: make(chan control.WatchEvent, 100), ended: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	f.t.Cleanup(func() {
		close(stop)
		resp.Body.Close()
		wg.Wait()
	})
	go func() {
		defer wg.Done()
		defer close(fd.ended)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev control.WatchEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				return
			}
			select {
			case fd.events <- ev:
			case <-stop:
				return
			}
		}
	}()
	return fd
}

func (f *fixture) getFeed(ctx context.Context, token string, rev int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s%s?rev=%d", f.ts.URL, control.PathWatch, rev), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// No client timeout: a feed is a long answer.
	return (&http.Client{Transport: f.client.Transport}).Do(req)
}

// get returns the status and body of a GET of path.
func (f *fixture) get(path string) (int, string) {
	f.t.Helper()
	resp, err := f.client.Get(f.ts.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after a minute", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nextRevoked returns the next revocation fd delivers, skipping
// bookmarks, and the feed's revision with it.
func nextRevoked(t *testing.T, fd *feed) control.WatchEvent {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-fd.events:
			if ev.Type == control.EventRevoked {
				return ev
			}
		case <-fd.ended:
			t.Fatal("the feed ended before a revocation came")
		case <-timeout:
			t.Fatal("no revocation on the feed within a minute")
		}
	}
}

// TestReplicaCutOffFromEtcd runs two replicas on one etcd cluster, A
// reaching it only through a fault proxy, and cuts A off. A must stop
// serving (readyz, the feed, issuance) rather than serve an old view,
// while B goes on; once the link heals, A serves again and a feed from
// where its sidecar was delivers what was revoked meanwhile.
func TestReplicaCutOffFromEtcd(t *testing.T) {
	endpoints := threeMemberEtcd(t)
	proxy, err := faultproxy.New(strings.TrimPrefix(endpoints[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	keys, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "/stack-test/"
	const storeTimeout = 1500 * time.Millisecond
	a := replicaOn(t, openEtcdStore(t, []string{"http://" + proxy.Addr()}, prefix), keys, storeTimeout)
	b := replicaOn(t, openEtcdStore(t, endpoints, prefix), keys, storeTimeout)
	ctx := t.Context()

	b.register("bot")
	cred := a.join("bot") // the session is in etcd: either replica knows it
	var list control.RevocationList
	a.must(cred.Token, http.MethodGet, control.PathRevokes, nil, &list)
	fd := a.openFeed(ctx, cred.Token, list.Rev)
	b.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "before", Reason: "test"}, nil)
	ev := nextRevoked(t, fd)
	if ev.Revocation.ID != "before" {
		t.Fatalf("A's feed delivered %+v, want the revocation of before", ev.Revocation)
	}
	lastRev := ev.Rev

	proxy.Partition()
	waitFor(t, "refused by A's /readyz", func() bool { st, _ := a.get("/readyz"); return st == http.StatusServiceUnavailable })
	select {
	case <-fd.ended:
	case <-time.After(60 * time.Second):
		t.Fatal("A's feed stayed open while A was stale")
	}
	if st, body := a.get("/readyz"); !strings.Contains(body, "store stale") {
		t.Errorf("A's /readyz while stale: %d %q, want the reason named", st, body)
	}
	if _, body := a.get("/metrics"); !strings.Contains(body, "stack_control_store_stale 1") {
		t.Errorf("A's metrics while stale lack stack_control_store_stale 1")
	}
	for _, c := range []struct{ method, path, token string }{
		{http.MethodPost, control.PathIssue, cred.Token},
		{http.MethodPost, control.PathRenew, cred.Token},
		{http.MethodGet, control.PathRevokes, cred.Token},
		{http.MethodGet, control.PathAgents, operatorToken},
		{http.MethodGet, control.PathJWKS, ""},
	} {
		if st, reason := a.call(c.token, c.method, c.path, nil, nil); st != http.StatusServiceUnavailable || reason != control.ReasonUnavailable {
			t.Errorf("%s %s through stale A: %d %q, want 503 %q", c.method, c.path, st, reason, control.ReasonUnavailable)
		}
	}
	if st, _ := b.get("/readyz"); st != http.StatusOK {
		t.Fatalf("B's /readyz while A is cut off: %d", st)
	}

	// Revoked through B while A is cut off: A must not hand out its view
	// as current, so it delivers nothing at all.
	b.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{JTI: "during", Reason: "test"}, nil)
	for range 3 {
		resp, err := a.getFeed(ctx, cred.Token, lastRev)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(b), "during") {
			t.Fatalf("a feed from stale A: %d %s", resp.StatusCode, b)
		}
	}
	proxy.Heal()
	waitFor(t, "ready on A after the link healed", func() bool { st, _ := a.get("/readyz"); return st == http.StatusOK })
	if _, body := a.get("/metrics"); !strings.Contains(body, "stack_control_store_stale 0") {
		t.Errorf("A's metrics once healed lack stack_control_store_stale 0")
	}
	resumed := a.openFeed(ctx, cred.Token, lastRev)
	if ev := nextRevoked(t, resumed); ev.Revocation.ID != "during" || ev.Rev <= lastRev {
		t.Fatalf("A's feed from %d after healing delivered %+v at %d, want the revocation of during", lastRev, ev.Revocation, ev.Rev)
	}
	a.must(cred.Token, http.MethodPost, control.PathIssue, nil, nil)
}

// Package storetest is the conformance suite every store.Store
// implementation passes: an implementation's tests call Run with a
// function that opens a new, empty store.
//
// The suite asserts revisions relative to the store's revision when it
// was opened, since a backend may not count from 0 (etcd's first write
// is revision 2), and watches "from the start" from that revision, since
// a store may share its revision counter and its compacted history with
// others (etcd stores under different prefixes of one cluster).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/control/store"
)

// wait bounds every wait for a watcher. It is long because the suite runs
// under the race detector on busy machines; a passing run never waits it
// out.
const wait = 30 * time.Second

// Run runs the suite as subtests of t. open returns a new, empty store;
// each subtest closes it when done (Close must be idempotent).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"InvalidKey", testInvalidKey},
		{"PutGet", testPutGet},
		{"EmptyValue", testEmptyValue},
		{"ValuesAreCopies", testValuesAreCopies},
		{"Revisions", testRevisions},
		{"CASCreateOnly", testCASCreateOnly},
		{"CASModRev", testCASModRev},
		{"CASNilDeletes", testCASNilDeletes},
		{"Delete", testDelete},
		{"List", testList},
		{"WatchHistoryThenLive", testWatchHistoryThenLive},
		{"WatchFromMid", testWatchFromMid},
		{"WatchFromFuture", testWatchFromFuture},
		{"WatchPrefix", testWatchPrefix},
		{"WatchCompacted", testWatchCompacted},
		{"ConcurrentWriters", testConcurrentWriters},
		{"SlowWatcher", testSlowWatcher},
		{"WatchCancel", testWatchCancel},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
		{"CreateOnly", testCreateOnly},
		{"CreateExpires", testCreateExpires},
		{"ChangesKeepExpiry", testChangesKeepExpiry},
		{"DeleteEndsExpiry", testDeleteEndsExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			defer closeWithin(t, s)
			tt.fn(t, s)
		})
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	if _, err := s.Get(t.Context(), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func testInvalidKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "")
	_, checks["Put"] = s.Put(ctx, "", []byte("v"))
	_, checks["CompareAndSwap"] = s.CompareAndSwap(ctx, "", 0, []byte("v"))
	_, checks["Delete"] = s.Delete(ctx, "")
	_, checks["Create"] = s.Create(ctx, "", []byte("v"), time.Hour)
	for op, err := range checks {
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("%s with an empty key = %v, want ErrInvalidKey", op, err)
		}
	}
	if got := rev(t, s); got != base {
		t.Errorf("revision moved from %d to %d on refused writes", base, got)
	}
}

func testPutGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	r1 := put(t, s, "a", "one")
	if r1 != base+1 {
		t.Fatalf("first Put = revision %d, want %d", r1, base+1)
	}
	wantKV(t, s, store.KV{Key: "a", Value: []byte("one"), CreateRev: r1, ModRev: r1})
	r2 := put(t, s, "a", "two")
	if r2 != r1+1 {
		t.Fatalf("second Put = revision %d, want %d", r2, r1+1)
	}
	wantKV(t, s, store.KV{Key: "a", Value: []byte("two"), CreateRev: r1, ModRev: r2})
	if got, err := s.Rev(ctx); err != nil || got != r2 {
		t.Fatalf("Rev = %d, %v; want %d", got, err, r2)
	}
}

func testEmptyValue(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, v := range [][]byte{nil, {}} {
		r, err := s.Put(ctx, "empty", v)
		if err != nil {
			t.Fatalf("Put(%#v): %v", v, err)
		}
		kv, err := s.Get(ctx, "empty")
		if err != nil {
			t.Fatalf("Get after Put(%#v): %v", v, err)
		}
		// Non-nil, so that handing it back to CompareAndSwap sets the
		// key instead of deleting it.
		if kv.Value == nil || len(kv.Value) != 0 || kv.ModRev != r {
			t.Fatalf("after Put(%#v): Get = %#v, want a non-nil empty value at %d", v, kv, r)
		}
	}
	kv, err := s.Get(ctx, "empty")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.CompareAndSwap(ctx, "empty", kv.ModRev, kv.Value)
	if err != nil {
		t.Fatalf("CompareAndSwap with the empty value read: %v", err)
	}
	wantKV(t, s, store.KV{Key: "empty", Value: []byte{}, CreateRev: kv.CreateRev, ModRev: r})
}

func testValuesAreCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Enough data that a backend keeping it in pages or buffers keeps it
	// in more than one.
	for i := range 100 {
		put(t, s, fmt.Sprintf("other/%03d", i), fmt.Sprintf("value %d", i))
	}
	in := []byte("abc")
	r, err := s.Put(ctx, "k", in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	got, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "abc" {
		t.Fatalf("changing the slice given to Put changed the stored value to %q", got.Value)
	}
	got.Value[0] = 'Y'
	kvs, _, err := s.List(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || string(kvs[0].Value) != "abc" {
		t.Fatalf("changing a value Get returned changed the store: List = %v", kvs)
	}
	// Values read stay intact through later writes: a backend that
	// returned memory it does not own would show other bytes here.
	for i := range 100 {
		put(t, s, fmt.Sprintf("other/%03d", i), fmt.Sprintf("changed %d", i))
	}
	put(t, s, "k", "def")
	if string(got.Value) != "Ybc" || string(kvs[0].Value) != "abc" || kvs[0].ModRev != r {
		t.Fatalf("returned values changed after later writes: %q, %q", got.Value, kvs[0].Value)
	}
}

func testRevisions(t *testing.T, s store.Store) {
	ctx := t.Context()
	last := rev(t, s)
	step := func(what string, r int64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r != last+1 {
			t.Fatalf("%s = revision %d, want %d", what, r, last+1)
		}
		last = r
		if got := rev(t, s); got != r {
			t.Fatalf("after %s Rev = %d, want %d", what, got, r)
		}
	}
	refused := func(what string, err error, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s = %v, want %v", what, err, want)
		}
		if got := rev(t, s); got != last {
			t.Fatalf("refused %s moved the revision from %d to %d", what, last, got)
		}
	}
	r, err := s.Put(ctx, "a", []byte("1"))
	step("Put a", r, err)
	r, err = s.Put(ctx, "b", []byte("1"))
	step("Put b", r, err)
	r, err = s.CompareAndSwap(ctx, "a", last-1, []byte("2"))
	step("CompareAndSwap a", r, err)
	_, err = s.CompareAndSwap(ctx, "a", last-1, []byte("3"))
	refused("stale CompareAndSwap", err, store.ErrConflict)
	r, err = s.Delete(ctx, "b")
	step("Delete b", r, err)
	_, err = s.Delete(ctx, "b")
	refused("Delete of a deleted key", err, store.ErrNotFound)
	r, err = s.CompareAndSwap(ctx, "b", 0, []byte("again"))
	step("CompareAndSwap re-creating b", r, err)
	for i := range 50 {
		r, err = s.Put(ctx, "c", fmt.Appendf(nil, "%d", i))
		step("Put c", r, err)
	}
}

func testCASCreateOnly(t *testing.T, s store.Store) {
	ctx := t.Context()
	r, err := s.CompareAndSwap(ctx, "lock", 0, []byte("me"))
	if err != nil {
		t.Fatalf("create-only CompareAndSwap of a missing key: %v", err)
	}
	if _, err := s.CompareAndSwap(ctx, "lock", 0, []byte("you")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create-only CompareAndSwap = %v, want ErrConflict", err)
	}
	wantKV(t, s, store.KV{Key: "lock", Value: []byte("me"), CreateRev: r, ModRev: r})
}

func testCASModRev(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1 := put(t, s, "k", "v1")
	r2, err := s.CompareAndSwap(ctx, "k", r1, []byte("v2"))
	if err != nil {
		t.Fatalf("CompareAndSwap at the current ModRev: %v", err)
	}
	for _, stale := range []int64{r1, r2 + 1, r2 - 100, 0} {
		if _, err := s.CompareAndSwap(ctx, "k", stale, []byte("lost")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CompareAndSwap at %d with the key at %d = %v, want ErrConflict", stale, r2, err)
		}
	}
	if _, err := s.CompareAndSwap(ctx, "missing", r2, []byte("x")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CompareAndSwap at %d of a missing key = %v, want ErrConflict", r2, err)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("v2"), CreateRev: r1, ModRev: r2})
}

func testCASNilDeletes(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1 := put(t, s, "k", "v")
	r2 := put(t, s, "k", "w")
	if _, err := s.CompareAndSwap(ctx, "k", r1, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale CompareAndSwap delete = %v, want ErrConflict", err)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("w"), CreateRev: r1, ModRev: r2})
	r3, err := s.CompareAndSwap(ctx, "k", r2, nil)
	if err != nil {
		t.Fatalf("CompareAndSwap delete: %v", err)
	}
	if r3 != r2+1 {
		t.Fatalf("CompareAndSwap delete = revision %d, want %d", r3, r2+1)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after CompareAndSwap delete = %v, want ErrNotFound", err)
	}
	if _, err := s.CompareAndSwap(ctx, "k", 0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CompareAndSwap delete of a missing key = %v, want ErrNotFound", err)
	}
	// Re-created, the key starts a new life.
	r4, err := s.CompareAndSwap(ctx, "k", 0, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("new"), CreateRev: r4, ModRev: r4})
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.Delete(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(missing) = %v, want ErrNotFound", err)
	}
	r1 := put(t, s, "k", "v")
	r2, err := s.Delete(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if r2 != r1+1 {
		t.Fatalf("Delete = revision %d, want %d", r2, r1+1)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := t.Context()
	revs := map[string]int64{}
	for _, k := range []string{"a/2", "b/1", "a/10", "a", "a/1", "ab", "a/1/x"} {
		revs[k] = put(t, s, k, "v-"+k)
	}
	revs["a/2"] = put(t, s, "a/2", "v-a/2")
	if _, err := s.Delete(ctx, "b/1"); err != nil {
		t.Fatal(err)
	}
	delete(revs, "b/1")
	cur := rev(t, s)

	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/1/x", "a/10", "a/2"}},
		{"a", []string{"a", "a/1", "a/1/x", "a/10", "a/2", "ab"}},
		{"", []string{"a", "a/1", "a/1/x", "a/10", "a/2", "ab"}},
		{"b/", nil},
		{"zzz", nil},
	} {
		kvs, r, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tt.prefix, err)
		}
		if r != cur {
			t.Errorf("List(%q) revision = %d, want %d", tt.prefix, r, cur)
		}
		var keys []string
		for _, kv := range kvs {
			keys = append(keys, kv.Key)
			if string(kv.Value) != "v-"+kv.Key || kv.ModRev != revs[kv.Key] {
				t.Errorf("List(%q): %s = %q at %d, want %q at %d", tt.prefix, kv.Key, kv.Value, kv.ModRev, "v-"+kv.Key, revs[kv.Key])
			}
		}
		if fmt.Sprint(keys) != fmt.Sprint(tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.prefix, keys, tt.want)
		}
	}
	kvs, _, err := s.List(ctx, "a/2")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].CreateRev >= kvs[0].ModRev {
		t.Errorf("List(a/2) = %+v, want one key rewritten after its creation", kvs)
	}
}

func testWatchHistoryThenLive(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	r1 := put(t, s, "k1", "a")
	r2 := put(t, s, "k2", "b")
	r3, err := s.Delete(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "", base)
	want := []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "k1", Value: []byte("a"), CreateRev: r1, ModRev: r1}},
		{Type: store.EventPut, KV: store.KV{Key: "k2", Value: []byte("b"), CreateRev: r2, ModRev: r2}},
		{Type: store.EventDelete, KV: store.KV{Key: "k1", ModRev: r3}},
	}
	wantEvents(t, collect(t, ch, 3), want)

	r4 := put(t, s, "k2", "c")
	r5, err := s.CompareAndSwap(ctx, "k3", 0, []byte{})
	if err != nil {
		t.Fatal(err)
	}
	r6, err := s.CompareAndSwap(ctx, "k2", r4, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, collect(t, ch, 3), []store.Event{
		{Type: store.EventPut, KV: store.KV{Key: "k2", Value: []byte("c"), CreateRev: r2, ModRev: r4}},
		{Type: store.EventPut, KV: store.KV{Key: "k3", Value: []byte{}, CreateRev: r5, ModRev: r5}},
		{Type: store.EventDelete, KV: store.KV{Key: "k2", ModRev: r6}},
	})
}

func testWatchFromMid(t *testing.T, s store.Store) {
	var revs []int64
	for i := range 5 {
		revs = append(revs, put(t, s, fmt.Sprintf("k%d", i), "v"))
	}
	ch := s.Watch(t.Context(), "", revs[2])
	// The first two events are the first after revs[2]: anything at or
	// before it would have come first.
	evs := collect(t, ch, 2)
	wantRevs(t, evs, revs[3], revs[4])
	r := put(t, s, "live", "v")
	wantRevs(t, collect(t, ch, 1), r)
}

func testWatchFromFuture(t *testing.T, s store.Store) {
	from := put(t, s, "k", "v") + 2
	ch := s.Watch(t.Context(), "", from)
	put(t, s, "k", "1")
	put(t, s, "k", "2")
	r := put(t, s, "k", "3")
	if r != from+1 {
		t.Fatalf("third Put = revision %d, want %d", r, from+1)
	}
	wantRevs(t, collect(t, ch, 1), r)
}

func testWatchPrefix(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "b/old", "v")
	rOld := put(t, s, "a/old", "v")
	ch := s.Watch(ctx, "a/", 0)
	var want []int64
	want = append(want, rOld)
	for i := range 20 {
		put(t, s, fmt.Sprintf("b/%d", i), "v")
		put(t, s, fmt.Sprintf("a%d", i), "v") // shares "a", not "a/"
		want = append(want, put(t, s, fmt.Sprintf("a/%d", i), "v"))
	}
	evs := collect(t, ch, len(want))
	wantRevs(t, evs, want...)
	for _, ev := range evs {
		if !bytes.HasPrefix([]byte(ev.KV.Key), []byte("a/")) {
			t.Fatalf("watch of a/ got %s", ev.KV.Key)
		}
	}
}

func testWatchCompacted(t *testing.T, s store.Store) {
	ctx := t.Context()
	var revs []int64
	for i := range 5 {
		revs = append(revs, put(t, s, "k", fmt.Sprint(i)))
	}
	if err := s.Compact(ctx, revs[4]+1); err == nil {
		t.Fatalf("Compact beyond the current revision %d succeeded", revs[4])
	}
	if err := s.Compact(ctx, revs[2]); err != nil {
		t.Fatalf("Compact(%d): %v", revs[2], err)
	}
	if err := s.Compact(ctx, revs[1]); err != nil {
		t.Fatalf("Compact below the compacted revision: %v", err)
	}
	for _, from := range []int64{0, revs[1]} {
		wantEnd(t, s.Watch(ctx, "", from), store.ErrCompacted)
	}
	wantRevs(t, collect(t, s.Watch(ctx, "", revs[2]), 2), revs[3], revs[4])
	// The data is untouched by compaction.
	wantKV(t, s, store.KV{Key: "k", Value: []byte("4"), CreateRev: revs[0], ModRev: revs[4]})
}

// testConcurrentWriters has writers race and a watcher check that it sees
// every revision exactly once, in order, with the change that got it.
func testConcurrentWriters(t *testing.T, s store.Store) {
	writers, each := 8, 200
	if testing.Short() {
		each = 25
	}
	ctx := t.Context()
	base := rev(t, s)
	ch := s.Watch(ctx, "", base)

	var mu sync.Mutex
	got := map[int64]string{} // revision: key written
	var wg sync.WaitGroup
	// Writers finish before the store closes, even when a check fails.
	defer wg.Wait()
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w/%d/%d", w, i%7)
				var r int64
				var err error
				if i%3 == 0 {
					r, err = s.Put(ctx, key, []byte(key))
				} else {
					// Read-modify-write, as a controller does.
					r, err = casLoop(ctx, s, key)
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				if prev, dup := got[r]; dup {
					t.Errorf("revision %d returned for both %s and %s", r, prev, key)
				}
				got[r] = key
				mu.Unlock()
			}
		})
	}
	evs := collect(t, ch, writers*each)
	wg.Wait()
	for i, ev := range evs {
		if want := base + int64(i) + 1; ev.KV.ModRev != want {
			t.Fatalf("event %d has revision %d, want %d", i, ev.KV.ModRev, want)
		}
		if key := got[ev.KV.ModRev]; ev.KV.Key != key || string(ev.KV.Value) != key {
			t.Fatalf("event at %d is %s=%q, the writer wrote %s", ev.KV.ModRev, ev.KV.Key, ev.KV.Value, key)
		}
	}
	if r := rev(t, s); r != base+int64(writers*each) {
		t.Fatalf("Rev = %d after %d writes from %d", r, writers*each, base)
	}
}

// casLoop sets key to its own name with CompareAndSwap, retrying on
// conflicts.
func casLoop(ctx context.Context, s store.Store, key string) (int64, error) {
	for {
		var at int64
		kv, err := s.Get(ctx, key)
		switch {
		case err == nil:
			at = kv.ModRev
		case !errors.Is(err, store.ErrNotFound):
			return 0, err
		}
		r, err := s.CompareAndSwap(ctx, key, at, []byte(key))
		if !errors.Is(err, store.ErrConflict) {
			return r, err
		}
	}
}

// testSlowWatcher leaves a watcher unread while many changes are made;
// it must then get all of them.
func testSlowWatcher(t *testing.T, s store.Store) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	base := rev(t, s)
	ch := s.Watch(t.Context(), "", base)
	var want []int64
	for i := range n {
		want = append(want, put(t, s, fmt.Sprintf("k%d", i%10), fmt.Sprint(i)))
	}
	evs := collect(t, ch, n)
	wantRevs(t, evs, want...)
	for i, ev := range evs {
		if string(ev.KV.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d carries %q", i, ev.KV.Value)
		}
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Watch(ctx, "", rev(t, s))
	r := put(t, s, "k", "v")
	wantRevs(t, collect(t, ch, 1), r)
	cancel()
	wantEnd(t, ch, nil)

	// Cancelled while its reader is not reading, with changes pending.
	ctx, cancel = context.WithCancel(t.Context())
	ch = s.Watch(ctx, "", r-1)
	put(t, s, "k", "w")
	cancel()
	wantEnd(t, ch, nil)

	// A context already done watches nothing.
	wantEnd(t, s.Watch(ctx, "", 0), nil)

	// The store is still fine.
	r = put(t, s, "k", "after")
	wantKV(t, s, store.KV{Key: "k", Value: []byte("after"), CreateRev: r - 2, ModRev: r})
}

func testCanceledContext(t *testing.T, s store.Store) {
	r := put(t, s, "k", "v")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k")
	_, checks["Put"] = s.Put(ctx, "k", []byte("x"))
	_, checks["CompareAndSwap"] = s.CompareAndSwap(ctx, "k", r, []byte("x"))
	_, checks["Delete"] = s.Delete(ctx, "k")
	_, checks["Create"] = s.Create(ctx, "new", []byte("x"), time.Hour)
	_, _, checks["List"] = s.List(ctx, "")
	_, checks["Rev"] = s.Rev(ctx)
	checks["Compact"] = s.Compact(ctx, r)
	for op, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", op, err)
		}
	}
	if got := rev(t, s); got != r {
		t.Fatalf("revision moved from %d to %d under a cancelled context", r, got)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("v"), CreateRev: r, ModRev: r})
}

func testClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	put(t, s, "k", "v")
	put(t, s, "k", "w")
	// Behind, and not being read while the store closes.
	behind := s.Watch(ctx, "", base)
	// Caught up and waiting for the next change.
	caughtUp := s.Watch(ctx, "", base)
	collect(t, caughtUp, 2)

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(wait):
		// Read, so that Close can return and the suite go on.
		wantEnd(t, behind, store.ErrClosed)
		t.Fatalf("Close did not return within %s while a watcher was not being read", wait)
	}
	wantEnd(t, caughtUp, store.ErrClosed)
	wantEnd(t, behind, store.ErrClosed)

	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k")
	_, checks["Put"] = s.Put(ctx, "k", []byte("x"))
	_, checks["CompareAndSwap"] = s.CompareAndSwap(ctx, "k", 0, []byte("x"))
	_, checks["Delete"] = s.Delete(ctx, "k")
	_, checks["Create"] = s.Create(ctx, "new", []byte("x"), time.Hour)
	_, _, checks["List"] = s.List(ctx, "")
	_, checks["Rev"] = s.Rev(ctx)
	checks["Compact"] = s.Compact(ctx, 0)
	for op, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
	wantEnd(t, s.Watch(ctx, "", 0), store.ErrClosed)
}

// shortTTL is the life of keys the suite waits to see expire: below etcd's
// minimum lease, which etcd then applies, so every backend expires them
// within a few seconds.
const shortTTL = time.Second

func testCreateOnly(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	r, err := s.Create(ctx, "k", []byte("v"), time.Hour)
	if err != nil {
		t.Fatalf("Create of a missing key: %v", err)
	}
	if r != base+1 {
		t.Fatalf("Create = revision %d, want %d", r, base+1)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("v"), CreateRev: r, ModRev: r})
	if _, err := s.Create(ctx, "k", []byte("again"), time.Hour); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second Create = %v, want ErrConflict", err)
	}
	p := put(t, s, "plain", "v")
	if _, err := s.Create(ctx, "plain", []byte("x"), time.Hour); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Create over a key made by Put = %v, want ErrConflict", err)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := s.Create(ctx, "other", []byte("x"), ttl); !errors.Is(err, store.ErrInvalidTTL) {
			t.Errorf("Create with ttl %s = %v, want ErrInvalidTTL", ttl, err)
		}
	}
	if got := rev(t, s); got != p {
		t.Fatalf("refused Creates moved the revision from %d to %d", p, got)
	}
	r, err = s.Create(ctx, "empty", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wantKV(t, s, store.KV{Key: "empty", Value: []byte{}, CreateRev: r, ModRev: r})
	wantKV(t, s, store.KV{Key: "k", Value: []byte("v"), CreateRev: p - 1, ModRev: p - 1})
}

// testCreateExpires checks that a key made by Create goes by itself, as a
// delete watchers see, and that keys with a longer life or none stay.
func testCreateExpires(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := rev(t, s)
	ch := s.Watch(ctx, "t/", base)
	r1, err := s.Create(ctx, "t/short", []byte("v"), shortTTL)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Create(ctx, "t/long", []byte("v"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r3 := put(t, s, "t/plain", "v")
	evs := collect(t, ch, 4)
	wantRevs(t, evs[:3], r1, r2, r3)
	del := evs[3]
	if del.Type != store.EventDelete || del.KV.Key != "t/short" || del.KV.ModRev <= r3 {
		t.Fatalf("after the puts, event %s %s at %d; want the delete of t/short after %d", del.Type, del.KV.Key, del.KV.ModRev, r3)
	}
	if _, err := s.Get(ctx, "t/short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of an expired key = %v, want ErrNotFound", err)
	}
	// A spender that read the key before it expired loses.
	if _, err := s.CompareAndSwap(ctx, "t/short", r1, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSwap delete of an expired key at its old revision = %v, want ErrConflict", err)
	}
	kvs, lrev, err := s.List(ctx, "t/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 2 || kvs[0].Key != "t/long" || kvs[1].Key != "t/plain" {
		t.Fatalf("List after expiry = %v, want t/long and t/plain", kvs)
	}
	if lrev < del.KV.ModRev {
		t.Fatalf("List at revision %d, before the expiry's %d", lrev, del.KV.ModRev)
	}
	// Gone, the key can be made again, for a new life.
	r4, err := s.Create(ctx, "t/short", []byte("new"), time.Hour)
	if err != nil {
		t.Fatalf("Create after expiry: %v", err)
	}
	wantKV(t, s, store.KV{Key: "t/short", Value: []byte("new"), CreateRev: r4, ModRev: r4})
}

// testChangesKeepExpiry checks that changing a key made by Create does
// not make it permanent: a compare-and-swap or a Put keeps its expiry.
func testChangesKeepExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1, err := s.Create(ctx, "k", []byte("v1"), shortTTL)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "k", r1)
	r2, err := s.CompareAndSwap(ctx, "k", r1, []byte("v2"))
	if err != nil {
		// Expired already on a very slow machine: nothing to check.
		if errors.Is(err, store.ErrConflict) {
			t.Skipf("the key expired before it could be changed: %v", err)
		}
		t.Fatal(err)
	}
	r3, err := s.Put(ctx, "k", []byte("v3"))
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch, 3)
	wantRevs(t, evs[:2], r2, r3)
	if evs[0].KV.CreateRev != r1 || evs[1].KV.CreateRev != r1 {
		t.Fatalf("changes of k report creation at %d and %d, want %d", evs[0].KV.CreateRev, evs[1].KV.CreateRev, r1)
	}
	if evs[2].Type != store.EventDelete || evs[2].KV.ModRev <= r3 {
		t.Fatalf("third event %s at %d, want k's expiry after %d", evs[2].Type, evs[2].KV.ModRev, r3)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after expiry = %v, want ErrNotFound", err)
	}
}

// testDeleteEndsExpiry checks that a key deleted and made again by Put is
// not taken by the expiry of its former life.
func testDeleteEndsExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	r1, err := s.Create(ctx, "k", []byte("old"), shortTTL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompareAndSwap(ctx, "k", r1, nil); err != nil {
		if errors.Is(err, store.ErrConflict) {
			t.Skipf("the key expired before it could be deleted: %v", err)
		}
		t.Fatal(err)
	}
	r2 := put(t, s, "k", "new")
	// A later expiry with a margin: once it is seen, k's old one is past.
	r3, err := s.Create(ctx, "sentinel", []byte("v"), shortTTL+2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "", r3)
	evs := collect(t, ch, 1)
	if evs[0].Type != store.EventDelete || evs[0].KV.Key != "sentinel" {
		t.Fatalf("event %s %s at %d, want the sentinel's expiry and nothing before it", evs[0].Type, evs[0].KV.Key, evs[0].KV.ModRev)
	}
	wantKV(t, s, store.KV{Key: "k", Value: []byte("new"), CreateRev: r2, ModRev: r2})
}

// closeWithin closes s, failing the test instead of hanging when Close
// does not return.
func closeWithin(t *testing.T, s store.Store) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(wait):
		t.Errorf("Close did not return within %s", wait)
	}
}

// rev returns the store's revision.
func rev(t *testing.T, s store.Store) int64 {
	t.Helper()
	r, err := s.Rev(t.Context())
	if err != nil {
		t.Fatalf("Rev: %v", err)
	}
	return r
}

// put sets key and returns the revision.
func put(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	r, err := s.Put(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	return r
}

// wantKV checks that Get returns want.
func wantKV(t *testing.T, s store.Store, want store.KV) {
	t.Helper()
	got, err := s.Get(t.Context(), want.Key)
	if err != nil {
		t.Fatalf("Get(%s): %v", want.Key, err)
	}
	if got.Key != want.Key || !bytes.Equal(got.Value, want.Value) || got.CreateRev != want.CreateRev || got.ModRev != want.ModRev {
		t.Fatalf("Get(%s) = %s=%q create %d mod %d, want %q create %d mod %d",
			want.Key, got.Key, got.Value, got.CreateRev, got.ModRev, want.Value, want.CreateRev, want.ModRev)
	}
}

// collect reads n events from ch. It fails on an error response, a closed
// channel, more events than n in the last response, or none within wait.
func collect(t *testing.T, ch <-chan store.WatchResponse, n int) []store.Event {
	t.Helper()
	var evs []store.Event
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for len(evs) < n {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(evs), n)
			}
			if resp.Err != nil {
				t.Fatalf("watch failed after %d of %d events: %v", len(evs), n, resp.Err)
			}
			if len(resp.Events) == 0 {
				t.Fatalf("watch sent a response with no events and no error")
			}
			evs = append(evs, resp.Events...)
		case <-deadline.C:
			t.Fatalf("watch sent %d of %d events within %s", len(evs), n, wait)
		}
	}
	if len(evs) > n {
		t.Fatalf("watch sent %d events, want %d: the extra from %d: %s", len(evs), n, evs[n].KV.ModRev, evs[n].KV.Key)
	}
	return evs
}

// wantEnd reads ch until it closes and checks its last response's error:
// want, or for want nil none or the context's.
func wantEnd(t *testing.T, ch <-chan store.WatchResponse, want error) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var last error
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				switch {
				case want == nil && last != nil && !errors.Is(last, context.Canceled):
					t.Fatalf("watch ended with %v, want no error", last)
				case want != nil && !errors.Is(last, want):
					t.Fatalf("watch ended with %v, want %v", last, want)
				}
				return
			}
			if last != nil {
				t.Fatalf("watch sent a response after its error %v", last)
			}
			last = resp.Err
		case <-deadline.C:
			t.Fatalf("watch did not end within %s", wait)
		}
	}
}

// wantRevs checks the events' revisions.
func wantRevs(t *testing.T, evs []store.Event, want ...int64) {
	t.Helper()
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		if ev.KV.ModRev != want[i] {
			t.Fatalf("event %d at revision %d, want %d", i, ev.KV.ModRev, want[i])
		}
	}
}

// wantEvents compares events; a delete's CreateRev is not compared, as
// not every backend knows it.
func wantEvents(t *testing.T, got, want []store.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		ok := g.Type == w.Type && g.KV.Key == w.KV.Key && g.KV.ModRev == w.KV.ModRev
		if w.Type == store.EventPut {
			ok = ok && g.KV.CreateRev == w.KV.CreateRev && g.KV.Value != nil && bytes.Equal(g.KV.Value, w.KV.Value)
		} else {
			ok = ok && g.KV.Value == nil
		}
		if !ok {
			t.Fatalf("event %d = %s %s=%q create %d mod %d, want %s %s=%q create %d mod %d", i,
				g.Type, g.KV.Key, g.KV.Value, g.KV.CreateRev, g.KV.ModRev,
				w.Type, w.KV.Key, w.KV.Value, w.KV.CreateRev, w.KV.ModRev)
		}
	}
}

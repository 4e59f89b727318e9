package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/stackctl/stack/control/store"
)

// A controller lists what there is, then watches from the list's
// revision, so that it misses no change and sees none twice.
func ExampleOpenBolt() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := store.OpenBolt(filepath.Join(dir, "state.db"), store.BoltOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Put(ctx, "agents/billing", []byte("enabled")); err != nil {
		log.Fatal(err)
	}
	kvs, rev, err := s.List(ctx, "agents/")
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range kvs {
		fmt.Printf("listed %s=%s at %d\n", kv.Key, kv.Value, rev)
	}

	// A change made after the list.
	if _, err := s.CompareAndSwap(ctx, "agents/billing", kvs[0].ModRev, []byte("paused")); err != nil {
		log.Fatal(err)
	}
	for resp := range s.Watch(ctx, "agents/", rev) {
		if resp.Err != nil {
			log.Fatal(resp.Err) // on ErrCompacted: list again
		}
		for _, ev := range resp.Events {
			fmt.Printf("%s %s=%s at %d\n", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.ModRev)
		}
		cancel()
	}
	// Output:
	// listed agents/billing=enabled at 1
	// put agents/billing=paused at 2
}

// A secret handed out for a while is created with a time to live: the
// store deletes it by itself, and watchers see the delete.
func ExampleBolt_Create() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := store.OpenBolt(filepath.Join(dir, "state.db"), store.BoltOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev, err := s.Create(ctx, "sessions/5f3a", []byte(`{"id":"sc-1"}`), 100*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("created at %d\n", rev)
	for resp := range s.Watch(ctx, "sessions/", rev) {
		if resp.Err != nil {
			log.Fatal(resp.Err)
		}
		for _, ev := range resp.Events {
			fmt.Printf("%s %s at %d\n", ev.Type, ev.KV.Key, ev.KV.ModRev)
		}
		cancel()
	}
	// Output:
	// created at 1
	// delete sessions/5f3a at 2
}

package store_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/stackctl/stack/control/store"
)

func BenchmarkBoltPut(b *testing.B) {
	s, _ := openBolt(b, store.BoltOptions{})
	ctx := context.Background()
	value := make([]byte, 256)
	i := 0
	for b.Loop() {
		if _, err := s.Put(ctx, "bench/"+strconv.Itoa(i%1000), value); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBoltWatchFanout measures one write seen by 100 watchers.
func BenchmarkBoltWatchFanout(b *testing.B) {
	const watchers = 100
	s, _ := openBolt(b, store.BoltOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen sync.WaitGroup
	var running sync.WaitGroup
	for range watchers {
		ch := s.Watch(ctx, "bench/", 0)
		running.Go(func() {
			for resp := range ch {
				for range resp.Events {
					seen.Done()
				}
			}
		})
	}
	defer running.Wait()
	defer cancel()
	value := make([]byte, 256)
	for b.Loop() {
		seen.Add(watchers)
		if _, err := s.Put(ctx, "bench/k", value); err != nil {
			b.Fatal(err)
		}
		seen.Wait()
	}
}

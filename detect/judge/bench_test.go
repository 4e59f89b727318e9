package judge

import (
	"bytes"
	"context"
	"net/http"
	"testing"
)

// BenchmarkCachedVerdict is the cost of content judged before: the
// SHA-256 of a 64 KiB window and a cache lookup.
func BenchmarkCachedVerdict(b *testing.B) {
	e := newEndpoint(b, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(completion(`{"injection":false,"score":0,"reason":""}`)))
	})
	j := mustJudge(b, e, "/v1/chat/completions", Options{})
	content := bytes.Repeat([]byte("benign text "), 64<<10/12)
	if _, err := j.Judge(context.Background(), Args{Content: content}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if v, err := j.Judge(context.Background(), Args{Content: content}); err != nil || !v.Cached {
			b.Fatal(v, err)
		}
	}
}

// BenchmarkLoopbackCall is the client's own cost of one call (request
// built, sent over a warm TLS connection, answer parsed) against a
// loopback server that answers at once: what a call adds besides the
// model's own time.
func BenchmarkLoopbackCall(b *testing.B) {
	e := newEndpoint(b, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(completion(`{"injection":false,"score":0,"reason":""}`)))
	})
	j := mustJudge(b, e, "/v1/chat/completions", Options{CacheSize: -1})
	content := bytes.Repeat([]byte("benign text "), 4<<10/12)
	for b.Loop() {
		if _, err := j.Judge(context.Background(), Args{Content: content}); err != nil {
			b.Fatal(err)
		}
	}
}

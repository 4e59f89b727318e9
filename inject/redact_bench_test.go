package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// benchInjected is what a request to a Stripe-like API injects.
var benchInjected = []Injected{{Name: "stripe", Secret: []byte("sk_test_4eC39HqLyjWDarjtT1zdp7dc")}}

// searchJSON is an API answer of at least size bytes as a Go server
// marshals it: links with percent-encoded queries ("&" escaped as \u0026),
// text with escaped newlines and quotes, the shapes of content that hold
// the escape characters an encoded secret would.
func searchJSON(size int) []byte {
	type hit struct {
		URL     string `json:"url"`
		Title   string `json:"title"`
		Snippet string `json:"snippet"`
		Score   int    `json:"score"`
	}
	var page struct {
		Query string `json:"query"`
		Next  string `json:"next"`
		Hits  []hit  `json:"hits"`
	}
	page.Query = "rate limits & retries"
	page.Next = "https://search.example.com/v1/search?q=rate%20limits%20%26%20retries&page=2"
	for i := 0; ; i++ {
		page.Hits = append(page.Hits, hit{
			URL:     fmt.Sprintf("https://docs.example.com/guides/limits?section=%d&lang=en#retry-after", i),
			Title:   fmt.Sprintf("Rate limits, part %d", i),
			Snippet: "When a request is rate limited the API answers 429 with a \"Retry-After\" header.\nWait that many seconds, then retry with backoff; 100% of idempotent calls are safe to repeat.",
			Score:   1000 - i,
		})
		b, err := json.Marshal(page)
		if err != nil {
			panic(err)
		}
		if len(b) >= size {
			return b
		}
	}
}

// BenchmarkRedactor is the redaction on every response that had a
// credential injected:
//
//   - bytes-4KiB: a small JSON answer redacted in memory (RedactBytes),
//     holding no secret, as most answers do;
//   - bytes-4KiB-echo: the same with the secret echoed once;
//   - stream-256KiB: a large answer streamed through NewRedactor, read
//     32 KiB at a time;
//   - header: the response headers of a typical JSON API.
func BenchmarkRedactor(b *testing.B) {
	small := searchJSON(4 << 10)
	echo := bytes.Replace(small, []byte("part 3"), []byte("part sk_test_4eC39HqLyjWDarjtT1zdp7dc"), 1)
	large := searchJSON(256 << 10)
	b.Run("bytes-4KiB", func(b *testing.B) {
		b.SetBytes(int64(len(small)))
		b.ReportAllocs()
		for b.Loop() {
			if out := RedactBytes(small, benchInjected); len(out) != len(small) {
				b.Fatal("changed")
			}
		}
	})
	b.Run("bytes-4KiB-echo", func(b *testing.B) {
		b.SetBytes(int64(len(echo)))
		b.ReportAllocs()
		for b.Loop() {
			if out := RedactBytes(echo, benchInjected); len(out) == len(echo) {
				b.Fatal("not redacted")
			}
		}
	})
	b.Run("stream-256KiB", func(b *testing.B) {
		b.SetBytes(int64(len(large)))
		b.ReportAllocs()
		buf := make([]byte, 32<<10)
		for b.Loop() {
			r := NewRedactor(io.NopCloser(bytes.NewReader(large)), benchInjected)
			n := 0
			for {
				m, err := r.Read(buf)
				n += m
				if err != nil {
					break
				}
			}
			if n != len(large) {
				b.Fatalf("read %d of %d", n, len(large))
			}
		}
	})
	b.Run("header", func(b *testing.B) {
		h := http.Header{
			"Content-Type":     {"application/json; charset=utf-8"},
			"Date":             {"Tue, 25 Nov 2026 10:00:00 GMT"},
			"Cache-Control":    {"no-cache, no-store"},
			"Request-Id":       {"req_9s6XKzkNRiz8i3"},
			"Stripe-Version":   {"2024-06-20"},
			"Server":           {"nginx"},
			"Vary":             {"Accept-Encoding"},
			"Link":             {"<https://api.example.com/v1/charges?starting_after=ch_123&limit=10>; rel=\"next\""},
			"X-Ratelimit-Left": {"99"},
			"Strict-Transport": {"max-age=63072000; includeSubDomains; preload"},
		}
		b.ReportAllocs()
		for b.Loop() {
			RedactHeader(h, benchInjected)
		}
	})
}

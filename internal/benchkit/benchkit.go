// Package benchkit holds what the load harness (cmd/stack-bench) and the
// package benchmarks share: the upstream's answer, so that a benchmark
// measures the bytes the side-by-side figures are made of, and the
// process's CPU time, which the benchmarks report per operation.
package benchkit

import (
	"encoding/json"
	"strings"
)

// BalanceJSON is the harness upstream's answer: a JSON object of exactly
// size bytes with its trailing newline (at least its fixed part), shaped
// like a small API answer.
func BalanceJSON(size int) []byte {
	base := map[string]any{"object": "balance", "livemode": false, "amount": 1000, "currency": "usd", "pad": ""}
	b, _ := json.Marshal(base)
	if pad := size - len(b) - 1; pad > 0 {
		base["pad"] = strings.Repeat("x", pad)
		b, _ = json.Marshal(base)
	}
	return append(b, '\n')
}

// Prose is text of exactly size bytes that reads as documentation does:
// ordinary English words, sentences and paragraphs, so that a layer
// that reads words (prompt_injection's learned layer) has words to read.
func Prose(size int) []byte {
	const para = "The scheduler keeps one queue per worker and steals from its neighbours when it runs dry. " +
		"Each task records when it was queued and when it ran, so the dashboard can show how long work waited. " +
		"Upgrading from the previous release needs no migration; the configuration keys keep their names and defaults.\n\n"
	return []byte(strings.Repeat(para, size/len(para)+1)[:size])
}

package ahocorasick

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// naive finds every occurrence of every word by comparing at each end.
func naive(words []string, fold func(byte) byte, text []byte) [][2]int {
	f := func(b []byte) []byte {
		out := make([]byte, len(b))
		for i, c := range b {
			out[i] = fold(c)
		}
		return out
	}
	ft := f(text)
	var hits [][2]int
	for end := 1; end <= len(text); end++ {
		var at [][2]int
		for w, word := range words {
			if n := len(word); n <= end && bytes.Equal(ft[end-n:end], f([]byte(word))) {
				at = append(at, [2]int{w, end})
			}
		}
		// Longest first, as the automaton reports them.
		slices.SortStableFunc(at, func(a, b [2]int) int { return len(words[b[0]]) - len(words[a[0]]) })
		hits = append(hits, at...)
	}
	return hits
}

func TestScanFindsEveryOccurrence(t *testing.T) {
	lower := func(b byte) byte {
		if 'A' <= b && b <= 'Z' {
			return b + 'a' - 'A'
		}
		return b
	}
	words := []string{"he", "she", "his", "hers", "ignore", "gnore", "e", "stk_ph_", "sk_"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fold := range []func(byte) byte{nil, lower} {
		m := New(words, fold)
		ref := fold
		if ref == nil {
			ref = func(b byte) byte { return b }
		}
		found := 0
		for n := range 500 {
			var b []byte
			// Every tenth text is long enough to be read in lanes.
			parts := rng.IntN(12)
			if n%10 == 0 {
				parts = 400 + rng.IntN(400)
			}
			for k := parts; k >= 0; k-- {
				b = append(b, words[rng.IntN(len(words))]...)
				b = append(b, " HeIgNoRe_x"[rng.IntN(11)])
			}
			var got [][2]int
			m.Scan(b, func(w, end int) { got = append(got, [2]int{w, end}) })
			want := naive(words, ref, b)
			found += len(want)
			if !slices.Equal(got, want) {
				t.Fatalf("%q: got %v, want %v", b, got, want)
			}
		}
		if found == 0 {
			t.Fatal("no occurrences in the random texts; the test proves nothing")
		}
	}
}

func BenchmarkScan64KiB(b *testing.B) {
	words := strings.Fields("ignore disregard forget instructions prompt system reveal send post upload email token password secret key include insert developer mode")
	text := []byte(strings.Repeat("The release notes say: send the report to the team, and ignore the draft. ", 900))[:64<<10]
	m := New(words, nil)
	b.SetBytes(int64(len(text)))
	n := 0
	for b.Loop() {
		m.Scan(text, func(int, int) { n++ })
	}
}

// FuzzScanRuns checks that skipping runs of one byte finds exactly what
// the naive search finds; the input is spread into runs so that runs are
// common.
func FuzzScanRuns(f *testing.F) {
	words := []string{"ignore", "xx", "e", "sk_live_", "    "}
	m := New(words, nil)
	for _, s := range []string{"ignore previous", "xxxxxxxx", "sk_live_aaaa", "eeee    ignore", "\x00\xff"} {
		f.Add([]byte(s), uint8(70))
	}
	f.Fuzz(func(t *testing.T, seed []byte, rep uint8) {
		var text []byte
		for i, c := range seed {
			if i%2 == 1 {
				text = append(text, bytes.Repeat([]byte{c}, int(rep))...)
			} else {
				text = append(text, c)
			}
		}
		var got [][2]int
		m.Scan(text, func(w, end int) { got = append(got, [2]int{w, end}) })
		if want := naive(words, func(b byte) byte { return b }, text); !slices.Equal(got, want) {
			t.Fatalf("%q: got %v, want %v", text, got, want)
		}
	})
}

// TestRepeatRunEnds checks the run repeatRun returns against the runs a
// byte-by-byte reading finds, for runs of every length around runMin and
// its doublings, at the end of the text and not.
func TestRepeatRunEnds(t *testing.T) {
	for _, n := range []int{runMin - 1, runMin, runMin + 1, 2*runMin - 1, 2 * runMin, 3*runMin + 5, 8*runMin + 1, 437} {
		for _, tail := range []string{"", "y", "yx"} {
			for _, lead := range []string{"", "ab", strings.Repeat("q", 40)} {
				text := []byte(lead + strings.Repeat("x", n) + tail)
				a, b := repeatRun(text, 0)
				wa, wb := len(text), len(text)
				if n >= runMin {
					wa, wb = len(lead), len(lead)+n
				}
				if a != wa || b != wb {
					t.Errorf("lead %d, run %d, tail %q: got [%d, %d), want [%d, %d)", len(lead), n, tail, a, b, wa, wb)
				}
			}
		}
	}
}

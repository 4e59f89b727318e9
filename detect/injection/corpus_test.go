package injection

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type corpusSample struct {
	Text     string `json:"text"`
	Label    string `json:"label"`
	Category string `json:"category"`
	Note     string `json:"note"`
}

// loadCorpus reads testdata/corpus; holdout selects the held-out half.
func loadCorpus(t testing.TB, holdout bool) []corpusSample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var out []corpusSample
	for _, f := range files {
		if strings.HasSuffix(f, "-holdout.jsonl") != holdout {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var s corpusSample
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if s.Label != "injection" && s.Label != "benign" {
				t.Fatalf("%s: label %q", f, s.Label)
			}
			out = append(out, s)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// encodedCategories are the normalization tricks: recall must be >= 0.9.
var encodedCategories = map[string]bool{
	"base64": true, "percent": true, "hex": true, "entities": true, "hidden-css": true, "homoglyph": true,
	"zero-width": true, "bidi": true, "tags": true, "leet": true, "rot13": true, "reversed": true, "separators": true,
}

type corpusStats struct{ tp, fn, fp, tn int }

// TestCorpus measures recall per injection category and the
// false-positive rate per benign category, on the development half and on
// the held-out half, and prints the table (go test -v -run TestCorpus).
func TestCorpus(t *testing.T) {
	for _, half := range []struct {
		name    string
		holdout bool
	}{{"development", false}, {"held-out", true}} {
		t.Run(half.name, func(t *testing.T) {
			samples := loadCorpus(t, half.holdout)
			stats := map[string]*corpusStats{}
			var misses, fps []string
			for _, s := range samples {
				r := Scan([]byte(s.Text), Options{})
				st := stats[s.Category]
				if st == nil {
					st = &corpusStats{}
					stats[s.Category] = st
				}
				switch {
				case s.Label == "injection" && r.Flagged:
					st.tp++
				case s.Label == "injection":
					st.fn++
					misses = append(misses, fmt.Sprintf("%s (%.2f): %s", s.Category, r.Score, s.Note))
				case r.Flagged:
					st.fp++
					fps = append(fps, fmt.Sprintf("%s (%.2f %s): %.100q", s.Category, r.Score, summarize(r.Matches), s.Text))
				default:
					st.tn++
				}
			}
			cats := make([]string, 0, len(stats))
			for c := range stats {
				cats = append(cats, c)
			}
			sort.Strings(cats)
			var tb strings.Builder
			fmt.Fprintf(&tb, "\n%-18s %5s %5s %5s %5s %9s %9s\n", "category", "tp", "fn", "fp", "tn", "recall", "fp-rate")
			var all corpusStats
			for _, c := range cats {
				st := stats[c]
				all.tp += st.tp
				all.fn += st.fn
				all.fp += st.fp
				all.tn += st.tn
				recall, fpr := "-", "-"
				if st.tp+st.fn > 0 {
					recall = fmt.Sprintf("%.2f", float64(st.tp)/float64(st.tp+st.fn))
				}
				if st.fp+st.tn > 0 {
					fpr = fmt.Sprintf("%.3f", float64(st.fp)/float64(st.fp+st.tn))
				}
				fmt.Fprintf(&tb, "%-18s %5d %5d %5d %5d %9s %9s\n", c, st.tp, st.fn, st.fp, st.tn, recall, fpr)
			}
			precision := float64(all.tp) / float64(max(1, all.tp+all.fp))
			recall := float64(all.tp) / float64(max(1, all.tp+all.fn))
			fpr := float64(all.fp) / float64(max(1, all.fp+all.tn))
			fmt.Fprintf(&tb, "%-18s %5d %5d %5d %5d %9.2f %9.3f  precision %.3f\n", "all", all.tp, all.fn, all.fp, all.tn, recall, fpr, precision)
			t.Log(tb.String())
			for _, m := range misses {
				t.Log("missed: " + m)
			}
			for _, f := range fps {
				t.Log("false positive: " + f)
			}

			for _, c := range cats {
				st := stats[c]
				if encodedCategories[c] {
					if r := float64(st.tp) / float64(st.tp+st.fn); r < 0.9 {
						t.Errorf("recall on %s = %.2f, want >= 0.9", c, r)
					}
				}
			}
			if fpr > 0.02 {
				t.Errorf("false-positive rate on benign texts = %.3f, want <= 0.02", fpr)
			}
		})
	}
}

// summarize names the patterns of ms, for the corpus report.
func summarize(ms []Match) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.Pattern+" ("+m.View+")")
	}
	return strings.Join(parts, ", ")
}

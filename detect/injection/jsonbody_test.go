package injection

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestJSONBody checks that a decoded body reads as json.Unmarshal reads
// its strings, and that every byte maps back to the byte or escape it
// came from.
func TestJSONBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	alphabet := []string{"a", "Z", " ", "\n", "\t", `"`, `\`, "/", "<", ">", "&", "é", "\u2028", "😀", "\u0456", "\x01", "\b", "\f"}
	for range 2000 {
		var sb strings.Builder
		for k := rng.IntN(40); k >= 0; k-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		want := sb.String()
		raw, err := json.Marshal([]string{want})
		if err != nil {
			t.Fatal(err)
		}
		if !jsonShaped(raw) {
			if strings.ContainsAny(want, "\n\t\"\\<>&\u2028\x01\b\f") {
				t.Fatalf("%s: not seen as a JSON body with escapes", raw)
			}
			continue
		}
		var j jsonBody
		j.decode(raw)
		if got := string(j.text); got != `["`+want+`"]` {
			t.Fatalf("%s decoded to %q, want %q", raw, got, `["`+want+`"]`)
		}
		// Walk body and text together: between escapes, bytes match one
		// for one; an escape's output maps to where it starts.
		r := 0
		for i := 0; i < len(j.text); {
			o := j.origin(i)
			if raw[r] == '\\' {
				if o != r || !j.escaped(i, i+1) {
					t.Fatalf("%s: text[%d] maps to %d, escaped %v; want the escape at %d", raw, i, o, j.escaped(i, i+1), r)
				}
				// Skip the escape (and a surrogate pair's second half).
				n := 2
				if raw[r+1] == 'u' {
					n = 6
					if _, m := jsonRune(raw[r:]); m > 0 {
						n = m
					}
				}
				for i < len(j.text) && j.origin(i) == r {
					i++
				}
				r += n
				continue
			}
			if o != r || j.escaped(i, i+1) || raw[r] != j.text[i] {
				t.Fatalf("%s: text[%d] maps to %d, want %d", raw, i, o, r)
			}
			i++
			r++
		}
		if o := j.origin(len(j.text)); o != len(raw) || r != len(raw) {
			t.Fatalf("%s: end maps to %d, walked to %d, want %d", raw, o, r, len(raw))
		}
	}
	// A backslash JSON does not know stays, for the hex decoder.
	var j jsonBody
	j.decode([]byte(`{"a": "\x69\x67", "b": "\"q\""}`))
	if got := string(j.text); got != `{"a": "\x69\x67", "b": ""q""}` {
		t.Errorf("decoded %q", got)
	}
}

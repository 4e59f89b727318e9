package judge

import (
	"errors"
	"math"
	"testing"
	"unicode/utf8"
)

// FuzzJudgeAnswer feeds arbitrary answers to both parsers: they return a
// verdict with a score in [0, 1] and a short printable reason, or an
// error wrapping ErrMalformed, and never panic.
func FuzzJudgeAnswer(f *testing.F) {
	for _, s := range []string{
		completion(`{"injection":true,"score":0.93,"reason":"asks the assistant to forward e-mails"}`),
		completion("```json\n{\"injection\": false, \"score\": 0}\n```"),
		completion("```\n```"),
		completion(`{"injection":true,"score":1e308}`),
		`{"choices":[]}`,
		`{"choices":[{"message":{"content":null,"refusal":"no"}}]}`,
		`{"choices":[{"message":{"content":"{\"injection\":true,\"score\":-0}"}}],"usage":{"prompt_tokens":-1}}`,
		`[{"label":"INJECTION","score":0.91},{"label":"BENIGN","score":0.09}]`,
		`[[{"label":"LABEL_0","score":1}]]`,
		`[{"label":"x","score":1},{"label":"y","score":1}]`,
		``, `null`, `[]`, `[[]]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		check := func(kind string, v Verdict, err error) {
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: error %v does not wrap ErrMalformed", kind, err)
				}
				if v.Injection {
					t.Fatalf("%s: an error came with a verdict of injection", kind)
				}
				return
			}
			if math.IsNaN(v.Score) || v.Score < 0 || v.Score > 1 {
				t.Fatalf("%s: score %v", kind, v.Score)
			}
			if len(v.Reason) > MaxReason || !utf8.ValidString(v.Reason) {
				t.Fatalf("%s: reason %q", kind, v.Reason)
			}
			for _, r := range v.Reason {
				if r < ' ' || r == 0x7f {
					t.Fatalf("%s: control character in reason %q", kind, v.Reason)
				}
			}
		}
		v, _, err := parseChat(answer)
		check("chat", v, err)
		v, err = parseClassifier(answer, DefaultThreshold)
		check("classifier", v, err)
		if err == nil && v.Injection != (v.Score >= DefaultThreshold) {
			t.Fatalf("classifier: injection %v at score %v", v.Injection, v.Score)
		}
	})
}

package inject

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestRedactBytesMatchesRedactor(t *testing.T) {
	inj := []Injected{{Name: "stripe", Secret: []byte("sk_test_REALSECRET")}, {Name: "gh", Secret: []byte("ghp_X")}}
	cases := map[string]string{
		"two secrets":    "echo sk_test_REALSECRET and sk_test_REAL but ghp_X; tail sk_test_",
		"none":           `{"object":"balance","amount":1000}`,
		"empty":          "",
		"at both ends":   "ghp_Xsk_test_REALSECRET",
		"adjacent twice": "sk_test_REALSECRETsk_test_REALSECRET",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			streamed, err := io.ReadAll(NewRedactor(io.NopCloser(bytes.NewReader([]byte(in))), inj))
			if err != nil {
				t.Fatal(err)
			}
			got := RedactBytes([]byte(in), inj)
			want(t, string(got), string(streamed))
			if bytes.Contains(got, []byte("sk_test_REALSECRET")) || bytes.Contains(got, []byte("ghp_X")) {
				t.Fatalf("a secret survived: %q", got)
			}
		})
	}
}

// A body without a secret is returned as is, not copied.
func TestRedactBytesNoSecretNoCopy(t *testing.T) {
	in := []byte(`{"object":"balance"}`)
	got := RedactBytes(in, []Injected{{Name: "s", Secret: []byte("SECRET")}})
	if &got[0] != &in[0] {
		t.Fatal("RedactBytes copied a body that holds no secret")
	}
}

// fuzzSecrets are the secrets the fuzzers redact: one plain, one made of
// the characters escapes are built from.
var fuzzSecrets = []string{"SECRET", `k%25\&amp; +/`}

// spellingRE is an independent statement of what the redactor looks for:
// a regular expression of every spelling of secret and of its base64,
// each byte as itself or any escape the package comment lists. It is
// leftmost-longest, as the redactor is.
func spellingRE(secret string) *regexp.Regexp {
	hexRE := func(v byte, min int) string {
		var b strings.Builder
		for _, c := range fmt.Sprintf("%0*x", min, v) {
			if c >= 'a' {
				fmt.Fprintf(&b, "[%c%c]", c, c-'a'+'A')
			} else {
				b.WriteRune(c)
			}
		}
		return b.String()
	}
	byteRE := func(c byte) string {
		alts := []string{regexp.QuoteMeta(string(c)), "%" + hexRE(c, 2)}
		if c == ' ' {
			alts = append(alts, `\+`)
		}
		if c < 0x80 {
			alts = append(alts, `\\u00`+hexRE(c, 2))
			dec, hx := strconv.Itoa(int(c)), fmt.Sprintf("%x", c)
			alts = append(alts, fmt.Sprintf("&#0{0,%d}%s;", 6-len(dec), dec), fmt.Sprintf("&#[xX]0{0,%d}%s;", 6-len(hx), hexRE(c, len(hx))))
		}
		switch c {
		case '/', '\\', '"':
			alts = append(alts, `\\`+regexp.QuoteMeta(string(c)))
		case '\b', '\f', '\n', '\r', '\t':
			alts = append(alts, `\\`+map[byte]string{'\b': "b", '\f': "f", '\n': "n", '\r': "r", '\t': "t"}[c])
		case '&', '<', '>', '\'':
			alts = append(alts, map[byte]string{'&': "&amp;", '<': "&lt;", '>': "&gt;", '\'': "&apos;"}[c])
		}
		if c == '"' {
			alts = append(alts, "&quot;")
		}
		return "(?:" + strings.Join(alts, "|") + ")"
	}
	var forms []string
	for _, text := range []string{secret, strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(secret)), "=")} {
		var b strings.Builder
		for i := 0; i < len(text); i++ {
			b.WriteString(byteRE(text[i]))
		}
		forms = append(forms, b.String())
	}
	re := regexp.MustCompile(strings.Join(forms, "|"))
	re.Longest()
	return re
}

func FuzzRedactBytes(f *testing.F) {
	f.Add([]byte("xxSECRETyySECRE"))
	f.Add([]byte("SSSECRETSECRET"))
	f.Add([]byte("%53E\\u0043R&#69;&#x54; U0VDUkVU %55%30VDUkVU"))
	f.Add([]byte(`k%2525%5c&amp;amp;+%2b\/ k%25\\&amp;amp;%20+/`))
	res := make([]*regexp.Regexp, len(fuzzSecrets))
	for i, s := range fuzzSecrets {
		res[i] = spellingRE(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for i, secret := range fuzzSecrets {
			got := RedactBytes(data, []Injected{{Name: "p", Secret: []byte(secret)}})
			if exp := res[i].ReplaceAllLiteral(data, []byte("stk_ph_p")); !bytes.Equal(got, exp) {
				t.Fatalf("secret %q in %q: got %q, want %q", secret, data, got, exp)
			}
		}
	})
}

// However a stream is cut, it comes out as RedactBytes makes it whole.
func FuzzStreamRedactor(f *testing.F) {
	f.Add([]byte("a SECRET b %53ECRET c U0VDUkVU"), uint8(3))
	f.Add([]byte(`k%2525%5c&amp;amp;+%2b\/ k%25\\&amp;amp;%20+/ &#x`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		n := int(size%16) + 1
		for _, secret := range fuzzSecrets {
			inj := []Injected{{Name: "p", Secret: []byte(secret)}}
			want := RedactBytes(data, inj)
			s := NewStreamRedactor(inj)
			var out []byte
			for i := 0; i < len(data); i += n {
				out = s.Feed(out, data[i:min(i+n, len(data))], false)
			}
			if out = s.Feed(out, nil, true); !bytes.Equal(out, want) {
				t.Fatalf("secret %q, pieces of %d of %q: %q, want %q", secret, n, data, out, want)
			}
		}
	})
}

// Fed piece by piece, however the pieces fall, a stream comes out as
// RedactBytes makes it whole.
func TestStreamRedactor(t *testing.T) {
	injected := []Injected{{Name: "stripe", Secret: []byte("sk_live_abcdef")}, {Name: "gh", Secret: []byte("ghp_0123")}}
	in := []byte("a sk_live_abcdef b sk_live_abc ghp_0123ghp_0123 c sk_live_abcdef")
	want := RedactBytes(in, injected)
	for size := 1; size <= len(in); size++ {
		s := NewStreamRedactor(injected)
		var out []byte
		for i := 0; i < len(in); i += size {
			out = s.Feed(out, in[i:min(i+size, len(in))], false)
		}
		out = s.Feed(out, nil, true)
		if string(out) != string(want) {
			t.Fatalf("pieces of %d: %q, want %q", size, out, want)
		}
	}
	if NewStreamRedactor(nil) != nil {
		t.Error("a StreamRedactor with nothing to redact")
	}
}

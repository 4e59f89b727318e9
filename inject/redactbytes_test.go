package inject

import (
	"bytes"
	"io"
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

func FuzzRedactBytes(f *testing.F) {
	f.Add([]byte("xxSECRETyySECRE"))
	f.Add([]byte("SSSECRETSECRET"))
	f.Fuzz(func(t *testing.T, data []byte) {
		secret := []byte("SECRET")
		got := RedactBytes(data, []Injected{{Name: "p", Secret: secret}})
		if exp := bytes.ReplaceAll(data, secret, []byte("stk_ph_p")); !bytes.Equal(got, exp) {
			t.Fatalf("got %q, want %q", got, exp)
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

package coding

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stackctl/stack/proxy/coding/codingtest"
)

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestDecode(t *testing.T) {
	plain := []byte(strings.Repeat("the secret sk_live_123 and more text; ", 2000))
	cases := []struct {
		name    string
		header  string   // Content-Encoding
		applied []string // encoders, in order
	}{
		{"gzip", "gzip", []string{"gzip"}},
		{"x-gzip", "x-gzip", []string{"gzip"}},
		{"deflate (zlib)", "deflate", []string{"deflate"}},
		{"deflate (raw)", "deflate", []string{"deflate-raw"}},
		{"br", "br", []string{"br"}},
		{"zstd", "zstd", []string{"zstd"}},
		{"stacked", "gzip, br", []string{"gzip", "br"}},
		{"identity listed", "identity, GZIP", []string{"gzip"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := plain
			for _, c := range tc.applied {
				body = codingtest.Encode(t, c, body)
			}
			codings, err := Parse(tc.header)
			if err != nil {
				t.Fatal(err)
			}
			src := &closeCounter{Reader: bytes.NewReader(body)}
			r := Decode(src, codings)
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("decoded %d bytes, want the %d plain ones", len(got), len(plain))
			}
			if err := r.Close(); err != nil || src.closed != 1 {
				t.Fatalf("Close: %v, source closed %d times", err, src.closed)
			}
		})
	}
}

func TestDecodeEmptyGzip(t *testing.T) {
	got, err := io.ReadAll(Decode(io.NopCloser(strings.NewReader("")), []string{"gzip"}))
	if err != nil || len(got) != 0 {
		t.Fatalf("got %q, %v; want an empty body", got, err)
	}
}

func TestDecodeTruncated(t *testing.T) {
	plain := []byte(strings.Repeat("some text that compresses; ", 500))
	for _, c := range decodable {
		t.Run(c, func(t *testing.T) {
			enc := codingtest.Encode(t, c, plain)
			_, err := io.ReadAll(Decode(io.NopCloser(bytes.NewReader(enc[:len(enc)/2])), []string{c}))
			if err == nil {
				t.Fatal("half a stream decoded without error")
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, v := range []string{"compress", "gzip, compress", "exi", "gzip, gzip, gzip, gzip, gzip"} {
		if _, err := Parse(v); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Parse(%q) = %v, want ErrUnsupported", v, err)
		}
	}
	if cs, err := Parse(""); err != nil || len(cs) != 0 {
		t.Errorf("Parse(\"\") = %v, %v", cs, err)
	}
}

func TestAccept(t *testing.T) {
	for in, want := range map[string]string{
		"gzip, deflate, br, zstd":             "gzip, deflate, br, zstd",
		"gzip;q=1.0, compress;q=0.5, *;q=0.1": "gzip;q=1.0",
		"identity":                            "",
		"br;q=0.9, x-gzip":                    "br;q=0.9, gzip",
		"sdch, exi":                           "",
	} {
		if got := Accept(in); got != want {
			t.Errorf("Accept(%q) = %q, want %q", in, got, want)
		}
	}
}

// What clients send passes as it is, without allocating: it is narrowed
// on every request.
func TestAcceptCommonValuesFree(t *testing.T) {
	for _, v := range []string{"gzip, deflate", "gzip, deflate, br, zstd", "gzip;q=1.0, br;q=0.9", "deflate, gzip, br, zstd"} {
		if got := Accept(v); got != v {
			t.Errorf("Accept(%q) = %q", v, got)
		}
		if n := testing.AllocsPerRun(100, func() { Accept(v) }); n != 0 {
			t.Errorf("Accept(%q) allocates %v times", v, n)
		}
	}
}

func BenchmarkAccept(b *testing.B) {
	for _, v := range []string{"gzip, deflate, br, zstd", "gzip, compress, *;q=0.1"} {
		b.Run(v, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Accept(v)
			}
		})
	}
}

// Any input, under any coding, decodes or fails: never a panic, and never
// more than a bounded output for a bounded read.
func FuzzDecode(f *testing.F) {
	for _, c := range decodable {
		f.Add(c, codingtest.Encode(f, c, []byte("seed body")))
	}
	f.Add("gzip, br", []byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		codings, err := Parse(header)
		if err != nil {
			return
		}
		r := Decode(io.NopCloser(bytes.NewReader(body)), codings)
		io.Copy(io.Discard, io.LimitReader(r, 1<<20))
		r.Close()
	})
}

package vault

import (
	"encoding/json"
	"testing"
	"time"
)

func validRecordJSON() []byte {
	r := &record{
		Format: recordFormat, Name: "stripe", Version: 1, Hosts: []string{"api.stripe.com"},
		Render: "bearer", Created: time.Unix(1700000000, 0).UTC(), Fingerprint: "hmac-sha256:00",
		KMS: "local://k", WrappedKey: []byte{1, 2, 3}, Nonce: make([]byte, nonceSize), Ciphertext: make([]byte, tagSize+4),
	}
	b, _ := r.encode()
	return b
}

func TestDecodeRecord(t *testing.T) {
	good := validRecordJSON()
	if _, err := decodeRecord("stripe", good); err != nil {
		t.Fatalf("valid record refused: %v", err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name string
		key  string
		data []byte
	}{
		{"truncated", "stripe", good[:len(good)/2]},
		{"empty", "stripe", nil},
		{"trailing", "stripe", append(append([]byte{}, good...), good...)},
		{"other key", "github", good},
		{"unknown field", "stripe", mutate(func(m map[string]any) { m["secret"] = "x" })},
		{"format 2", "stripe", mutate(func(m map[string]any) { m["format"] = 2 })},
		{"version 0", "stripe", mutate(func(m map[string]any) { m["version"] = 0 })},
		{"no wrapped key", "stripe", mutate(func(m map[string]any) { delete(m, "wrapped_key") })},
		{"short nonce", "stripe", mutate(func(m map[string]any) { m["nonce"] = "AAAA" })},
		{"short ciphertext", "stripe", mutate(func(m map[string]any) { m["ciphertext"] = "AAAA" })},
		{"no hosts", "stripe", mutate(func(m map[string]any) { m["hosts"] = []string{} })},
		{"unnormalized hosts", "stripe", mutate(func(m map[string]any) { m["hosts"] = []string{"API.stripe.com"} })},
		{"bad render", "stripe", mutate(func(m map[string]any) { m["render"] = "cookie" })},
		{"no created", "stripe", mutate(func(m map[string]any) { delete(m, "created") })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(tt.key, tt.data); err == nil {
				t.Fatal("decoded")
			} else if !isCorrupt(err) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func isCorrupt(err error) bool {
	for e := err; e != nil; {
		if e == ErrCorrupt {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// FuzzDecodeRecord checks that no stored bytes crash the decoder and that
// whatever it accepts re-encodes to a record it accepts again.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("stripe", validRecordJSON())
	f.Add("stripe", []byte(`{"format":1}`))
	f.Add("x", []byte(`{`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		r, err := decodeRecord(name, data)
		if err != nil {
			if !isCorrupt(err) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		b, err := r.encode()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRecord(name, b)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
		if string(r.secretAAD()) != string(r2.secretAAD()) {
			t.Fatal("additional data changed across re-encoding")
		}
	})
}

func TestCacheTTLAndBound(t *testing.T) {
	now := time.Unix(0, 0)
	c := newCache(time.Minute, 2, func() time.Time { return now })
	put := func(name, secret string) {
		c.put(&Credential{Name: name}, []byte(secret))
	}
	put("a", "1")
	put("b", "2")
	if _, s, ok := c.get("a"); !ok || string(s) != "1" {
		t.Fatal("a not cached")
	}
	put("c", "3") // evicts b, the least recently used
	if _, _, ok := c.get("b"); ok {
		t.Fatal("b not evicted")
	}
	if c.len() != 2 {
		t.Fatalf("len = %d, want 2", c.len())
	}
	now = now.Add(59 * time.Second)
	if _, _, ok := c.get("a"); !ok {
		t.Fatal("a expired early")
	}
	now = now.Add(time.Second)
	if _, _, ok := c.get("a"); ok {
		t.Fatal("a served at its TTL")
	}
	put("c", "3")
	_, s, _ := c.get("c")
	s[0] = 'X'
	if _, s2, _ := c.get("c"); string(s2) != "3" {
		t.Fatal("caller's copy aliases the cache")
	}
	if s, _, ok := c.secret("c"); !ok || string(s) != "3" {
		t.Fatal("secret: c not served")
	} else {
		s[0] = 'X'
	}
	if s, _, _ := c.secret("c"); string(s) != "3" {
		t.Fatal("secret: caller's copy aliases the cache")
	}
	now = now.Add(time.Minute)
	if _, _, ok := c.secret("c"); ok {
		t.Fatal("secret served at its TTL")
	}
	off := newCache(-1, 10, time.Now)
	off.put(&Credential{Name: "a"}, []byte("1"))
	if _, _, ok := off.get("a"); ok {
		t.Fatal("disabled cache served a secret")
	}
	if _, _, ok := off.secret("a"); ok {
		t.Fatal("disabled cache served a secret")
	}
}

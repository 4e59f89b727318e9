package passport

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/vault/kms"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func TestRotation(t *testing.T) {
	f := newFixture(t, nil)
	oldKid, _ := f.keys.Current(f.clock.Now())
	oldTok, _ := f.issue(t, IssueRequest{TTL: time.Hour})

	keepFor := DefaultMaxTTL + DefaultLeeway
	newKid, err := f.keys.Rotate(f.clock.Now(), keepFor)
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	if kid, _ := f.keys.Current(f.clock.Now()); kid != newKid {
		t.Fatalf("current kid = %s, want %s", kid, newKid)
	}
	jwks := f.keys.JWKS(f.clock.Now())
	if len(jwks.Keys) != 2 || jwks.Keys[0].KeyID != newKid || jwks.Keys[1].KeyID != oldKid {
		t.Fatalf("JWKS after rotation = %v", jwks.Keys)
	}
	if err := f.verify.UpdateJWKS(jwks); err != nil {
		t.Fatal(err)
	}
	newTok, _ := f.issue(t, IssueRequest{})
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := f.verify.Verify(tok); err != nil {
			t.Errorf("%s key after rotation: %v", name, err)
		}
	}

	// Just before retirement the old key is still published; at it, gone.
	f.clock.Advance(keepFor - time.Second)
	if n := len(f.keys.JWKS(f.clock.Now()).Keys); n != 2 {
		t.Fatalf("JWKS before retire_after has %d keys", n)
	}
	f.clock.Advance(time.Second)
	jwks = f.keys.JWKS(f.clock.Now())
	if len(jwks.Keys) != 1 || jwks.Keys[0].KeyID != newKid {
		t.Fatalf("JWKS after retire_after = %v", jwks.Keys)
	}
	if _, ok := f.keys.PublicKeys(f.clock.Now())[oldKid]; ok {
		t.Fatal("PublicKeys still has the retired key")
	}
	if err := f.verify.UpdateJWKS(jwks); err != nil {
		t.Fatal(err)
	}
	if n := f.keys.Prune(f.clock.Now()); n != 1 {
		t.Fatalf("Prune dropped %d keys, want the retired one", n)
	}
	if got := f.keys.Keys(f.clock.Now()); len(got) != 1 || got[0].KID != newKid || !got[0].Current {
		t.Fatalf("Keys() = %+v", got)
	}
}

func TestRetiredKidIsUnknown(t *testing.T) {
	f := newFixture(t, nil)
	oldTok, _ := f.issue(t, IssueRequest{TTL: time.Hour})
	if _, err := f.keys.Rotate(f.clock.Now(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := f.verify.UpdateJWKS(f.keys.JWKS(f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify.Verify(oldTok); err != nil {
		t.Fatalf("before retire_after: %v", err)
	}
	f.clock.Advance(10 * time.Minute)
	if err := f.verify.UpdateJWKS(f.keys.JWKS(f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	// The token has not expired yet, but its key is gone: the cache entry
	// from the first Verify must not be served either.
	if _, err := f.verify.Verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after retire_after: err = %v, want ErrUnknownKey", err)
	}
}

func TestKeySetSaveLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "issuer-keys.json")
	w := kmstest.Local(t)
	clk := testclock.Start()
	ks, err := GenerateKeySet(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(clk.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := ks.Save(ctx, path, w); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	_, priv := ks.Current(clk.Now())
	if strings.Contains(string(raw), string(priv.Seed())) || !strings.Contains(string(raw), `"wrapper": "`+w.URI()+`"`) {
		t.Errorf("key file content unexpected: %s", raw)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	loaded, err := LoadKeySet(ctx, path, w)
	if err != nil {
		t.Fatal(err)
	}
	kid, lpriv := loaded.Current(clk.Now())
	wantKid, _ := ks.Current(clk.Now())
	if kid != wantKid || !lpriv.Equal(priv) {
		t.Fatalf("loaded current = %s, want %s", kid, wantKid)
	}
	if got, want := loaded.Keys(clk.Now()), ks.Keys(clk.Now()); len(got) != 2 || !got[0].RetireAfter.Equal(want[0].RetireAfter) || got[0].Current || !got[1].Current {
		t.Fatalf("loaded keys = %+v, want %+v", got, want)
	}

	// A different wrapping key, or a file whose entries were swapped, fails.
	if _, err := LoadKeySet(ctx, path, kmstest.Local(t)); err == nil {
		t.Fatal("loaded with the wrong wrapping key")
	}
	swapped := strings.Replace(string(raw), wantKid, "AAAA", 1)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(swapped), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeySet(ctx, bad, w); err == nil {
		t.Fatal("loaded a key under another kid (aad must bind the kid)")
	}
	if err := os.WriteFile(bad, []byte(`{"version":9,"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeySet(ctx, bad, w); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("future version: err = %v, want ErrKeyFile", err)
	}
	if _, err := LoadKeySet(ctx, filepath.Join(dir, "missing.json"), w); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}

// A key dropped from the JWKS stays known to AllPublicKeys, across a save
// and load, so what it signed for the record still verifies.
func TestRetiredKeysKeptForRecords(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	ks, err := GenerateKeySet(now)
	if err != nil {
		t.Fatal(err)
	}
	oldKid, _ := ks.Current(now)
	if _, err := ks.Rotate(now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Rotate(now.Add(2*time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := ks.PublicKeys(now.Add(2 * time.Minute))[oldKid]; ok {
		t.Fatal("the first key is still published after its window")
	}
	if _, ok := ks.AllPublicKeys()[oldKid]; !ok {
		t.Fatal("AllPublicKeys lost the retired key")
	}
	w := kmstest.Local(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := ks.Save(ctx, path, w); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKeySet(ctx, path, w)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := loaded.AllPublicKeys()[oldKid]; !ok {
		t.Error("the retired key did not survive save and load")
	}
	if len(loaded.AllPublicKeys()) != 3 {
		t.Errorf("AllPublicKeys has %d keys, want 3", len(loaded.AllPublicKeys()))
	}
}

func TestRewrapKeyFile(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	ks, err := GenerateKeySet(now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		// The second rotation retires the first key: three kids in all.
		if _, err := ks.Rotate(now.Add(time.Duration(i)*2*time.Minute), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	from, to := kmstest.Local(t), kmstest.NewFailing(kmstest.Local(t))
	dir := t.TempDir()
	path, newPath := filepath.Join(dir, "keys.json"), filepath.Join(dir, "keys.json.new")
	if err := ks.Save(ctx, path, from); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := RewrapKeyFile(ctx, path, newPath, from, to); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("RewrapKeyFile changed the old file")
	}
	moved, err := LoadKeySet(ctx, newPath, to)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(ks, moved) {
		t.Errorf("moved keys = %+v, want %+v", moved.Keys(now), ks.Keys(now))
	}
	kid, priv := moved.Current(now)
	if wantKid, wantPriv := ks.Current(now); kid != wantKid || !priv.Equal(wantPriv) {
		t.Error("the current key changed")
	}
	if _, err := LoadKeySet(ctx, newPath, from); err == nil {
		t.Error("the old wrapper still unwraps the new file")
	}
	if raw, _ := os.ReadFile(newPath); !strings.Contains(string(raw), `"wrapper": "`+to.URI()+`"`) {
		t.Errorf("new file does not name its wrapper:\n%s", raw)
	}

	// A target that cannot give back what it wrapped leaves nothing.
	to.FailUnwrap(kms.ErrUnwrap)
	other := filepath.Join(dir, "other.json")
	if err := RewrapKeyFile(ctx, path, other, from, to); err == nil {
		t.Error("rewrap to a wrapper that cannot unwrap succeeded")
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed rewrap left %s: %v", other, err)
	}
}

// tokenKid is the kid in a passport's protected header.
func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected.KeyID
}

func TestPendingKeyIsPublishedBeforeItSigns(t *testing.T) {
	f := newFixture(t, nil)
	oldKid, _ := f.keys.Current(f.clock.Now())
	const delay = 10 * time.Second
	keepFor := DefaultMaxTTL + DefaultLeeway
	rotatedAt := f.clock.Now()
	newKid, err := f.keys.RotateAfter(rotatedAt, keepFor, delay)
	if err != nil {
		t.Fatal(err)
	}
	jwks := f.keys.JWKS(f.clock.Now())
	if len(jwks.Keys) != 2 || jwks.Keys[0].KeyID != newKid || jwks.Keys[1].KeyID != oldKid {
		t.Fatalf("JWKS right after a delayed rotation = %v, want the new key published", jwks.Keys)
	}
	if err := f.verify.UpdateJWKS(jwks); err != nil {
		t.Fatal(err)
	}
	infos := f.keys.Keys(f.clock.Now())
	if len(infos) != 2 || !infos[0].Current || infos[0].Pending || infos[1].Current || !infos[1].Pending ||
		!infos[1].ActiveAt.Equal(rotatedAt.Add(delay)) {
		t.Fatalf("Keys while pending = %+v", infos)
	}
	// The previous key signs until the new one's activation and stays
	// published for its passports' lifetime after that.
	if want := rotatedAt.Add(delay + keepFor); !infos[0].RetireAfter.Equal(want) {
		t.Errorf("previous key retires after %s, want %s", infos[0].RetireAfter, want)
	}
	f.clock.Advance(delay - time.Nanosecond)
	before, _ := f.issue(t, IssueRequest{})
	if kid := tokenKid(t, before); kid != oldKid {
		t.Fatalf("passport signed before activation with %s, want the previous key %s", kid, oldKid)
	}
	f.clock.Advance(time.Nanosecond)
	after, _ := f.issue(t, IssueRequest{})
	if kid := tokenKid(t, after); kid != newKid {
		t.Fatalf("passport signed at activation with %s, want %s", kid, newKid)
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := f.verify.Verify(tok); err != nil {
			t.Errorf("passport signed %s activation: %v", name, err)
		}
	}
	if infos := f.keys.Keys(f.clock.Now()); infos[0].Current || !infos[1].Current || infos[1].Pending {
		t.Errorf("Keys after activation = %+v", infos)
	}
}

func TestPendingKeySurvivesMarshal(t *testing.T) {
	ctx := context.Background()
	w := kmstest.Local(t)
	clk := testclock.Start()
	ks, err := GenerateKeySet(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldKid, _ := ks.Current(clk.Now())
	newKid, err := ks.RotateAfter(clk.Now(), time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ks.Marshal(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	_, priv := ks.Current(clk.Now())
	if strings.Contains(string(b), base64.RawURLEncoding.EncodeToString(priv.Seed())) {
		t.Fatal("Marshal wrote a plaintext seed")
	}
	back, err := ParseKeySet(ctx, b, w)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(ks, back) {
		t.Fatalf("parsed keys = %+v, want %+v", back.Keys(clk.Now()), ks.Keys(clk.Now()))
	}
	if kid, _ := back.Current(clk.Now()); kid != oldKid {
		t.Errorf("parsed set signs with %s while the new key is pending, want %s", kid, oldKid)
	}
	if kid, _ := back.Current(clk.Now().Add(time.Minute)); kid != newKid {
		t.Errorf("parsed set signs with %s after activation, want %s", kid, newKid)
	}

	// A file written before keys could be pending has no active_at: its
	// keys are active.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range raw["keys"].([]any) {
		delete(k.(map[string]any), "active_at")
	}
	old, _ := json.Marshal(raw)
	back, err = ParseKeySet(ctx, old, w)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := back.Current(clk.Now()); kid != newKid {
		t.Errorf("a set without active_at signs with %s, want the newest key %s", kid, newKid)
	}
}

func TestParseKeySetRefusesBadBytes(t *testing.T) {
	ctx := context.Background()
	w := kmstest.Local(t)
	ks, err := GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, err := ks.Marshal(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrKeyFile},
		{"not json", []byte("{keys"), ErrKeyFile},
		{"truncated", good[:len(good)/2], ErrKeyFile},
		{"other version", []byte(strings.Replace(string(good), `"version": 1`, `"version": 2`, 1)), ErrKeyFile},
		{"no keys", []byte(`{"version":1,"wrapper":"x","keys":[]}`), ErrNoKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseKeySet(ctx, tc.b, w); !errors.Is(err, tc.want) {
				t.Fatalf("ParseKeySet = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotateAfterRefusesNegativeDelay(t *testing.T) {
	ks, err := GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.RotateAfter(time.Now(), time.Hour, -time.Second); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("RotateAfter with a negative delay = %v", err)
	}
	if n := len(ks.Keys(time.Now())); n != 1 {
		t.Fatalf("a refused rotation left %d keys", n)
	}
}

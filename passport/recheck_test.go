package passport

import (
	"errors"
	"testing"
	"time"
)

func TestRecheck(t *testing.T) {
	t.Run("answers as Verify while nothing changes", func(t *testing.T) {
		f := newFixture(t, nil)
		tok, want := f.issue(t, IssueRequest{Agent: "bot"})
		vd, err := f.verify.Check(tok)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.verify.Recheck(vd)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.Subject != "bot" || vd.Claims() != got {
			t.Fatalf("Recheck claims = %+v, want those of %s", got, want.ID)
		}
	})
	t.Run("sees a revocation at once", func(t *testing.T) {
		f, store := newStoreFixture(t)
		tok, c := f.issue(t, IssueRequest{Agent: "bot"})
		vd, err := f.verify.Check(tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.RevokeJTI(c.ID, c.Expiry, "test"); err != nil {
			t.Fatal(err)
		}
		_, err = f.verify.Recheck(vd)
		var ve *VerifiedError
		if !errors.Is(err, ErrRevoked) || !errors.As(err, &ve) || ve.Claims.ID != c.ID {
			t.Fatalf("err = %v, want ErrRevoked naming %s", err, c.ID)
		}
	})
	t.Run("sees expiry", func(t *testing.T) {
		f := newFixture(t, nil)
		tok, _ := f.issue(t, IssueRequest{TTL: time.Minute})
		vd, err := f.verify.Check(tok)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute + DefaultLeeway)
		if _, err := f.verify.Recheck(vd); !errors.Is(err, ErrExpired) {
			t.Fatalf("err = %v, want ErrExpired", err)
		}
	})
	t.Run("verifies afresh once the keys change", func(t *testing.T) {
		f := newFixture(t, nil)
		tok, _ := f.issue(t, IssueRequest{})
		vd, err := f.verify.Check(tok)
		if err != nil {
			t.Fatal(err)
		}
		other, err := GenerateKeySet(f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := f.verify.UpdateJWKS(other.JWKS(f.clock.Now())); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verify.Recheck(vd); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey: the signing key is no longer trusted", err)
		}
	})
	t.Run("a bad token gives no Verified", func(t *testing.T) {
		f := newFixture(t, nil)
		tok, _ := f.issue(t, IssueRequest{})
		// A character inside the signature, not its last one: that one
		// carries padding bits, so some replacements decode to the same
		// signature.
		i := len(tok) - 10
		c := byte('A')
		if tok[i] == c {
			c = 'B'
		}
		if vd, err := f.verify.Check(tok[:i] + string(c) + tok[i+1:]); err == nil || vd != nil {
			t.Fatalf("Check of a tampered token = %v, %v", vd, err)
		}
	})
}

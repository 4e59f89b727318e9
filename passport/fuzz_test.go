package passport

import (
	"errors"
	"testing"
)

func FuzzVerify(f *testing.F) {
	fx := newFixture(f, nil)
	good, _ := fx.issue(f, IssueRequest{})
	child, _ := fx.issue(f, IssueRequest{Agent: "child", Scope: stripeScope(), Parent: good})
	f.Add(good)
	f.Add(child)
	f.Add(good[:len(good)-3])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJFZERTQSIsInR5cCI6InBhc3Nwb3J0K2p3dCIsImtpZCI6IngifQ.e30.AAAA")
	f.Add("..")
	f.Add("a.b.c.d")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := fx.verify.Verify(token)
		if err == nil {
			// Anything that verifies must be one of ours, with a usable scope.
			if c == nil || c.Subject == "" || c.ID == "" || c.Scope.Validate() != nil {
				t.Fatalf("verified junk: %+v", c)
			}
			return
		}
		if c != nil {
			t.Fatal("claims with an error")
		}
		if Reason(err) == "" {
			t.Fatal("error without a reason")
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupportedAlgorithm) &&
			!errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
			// Only well-signed tokens get past the signature; the fuzzer
			// cannot forge one, so later errors mean a bug.
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	f.Add([]byte("- hosts: [api.stripe.com]\n  methods: [GET]\n  paths: [\"/v1/charges/**\"]\n  credentials: [stripe]\n"))
	f.Add([]byte(`[{"hosts":["*.example.com"],"params":[{"name":"q","from":"query","op":"regex","value":"[a-z]+"}]}]`))
	f.Add([]byte(`[{"hosts":["a.com"],"params":[{"name":"s","from":"body","op":"in","values":["a","b"]}]}]`))
	f.Add([]byte("- &a {hosts: [a.com]}\n- *a\n"))
	f.Add([]byte("{"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseScope(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidScope) {
				t.Fatalf("error without ErrInvalidScope: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed scope fails Validate: %v", err)
		}
		// A valid scope must evaluate without trouble and cover itself.
		_ = s.Allows(Request{Host: "api.stripe.com", Method: "GET", Path: "/v1/charges/x", Body: []byte(`{"s":"a"}`)})
		if err := s.Covers(s); err != nil {
			t.Fatalf("scope does not cover itself: %v", err)
		}
	})
}

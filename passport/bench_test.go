package passport

import "testing"

func BenchmarkVerifyFresh(b *testing.B) {
	f := newFixture(b, &memRevocations{})
	v, err := NewVerifier(VerifierOptions{Keys: f.keys.JWKS(f.clock.Now()), Now: f.clock.Now, Revocations: &memRevocations{}, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := f.issue(b, IssueRequest{Scope: ReferenceRoles()["content-publisher"].Scope})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b, &memRevocations{})
	tok, _ := f.issue(b, IssueRequest{Scope: ReferenceRoles()["content-publisher"].Scope})
	if _, err := f.verify.Verify(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.verify.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

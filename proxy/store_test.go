package proxy

import "testing"

func TestVaultStoreBoundCredentialsFollowReload(t *testing.T) {
	v := newTestVault(t, t.TempDir())
	putBearer(t, v, "stripe", "sk_a", "api.stripe.com")
	s, err := NewVaultStore(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := func(host string) []string {
		var out []string
		for _, c := range s.BoundCredentials(host) {
			out = append(out, c.Name)
		}
		return out
	}
	if got := names("api.stripe.com"); len(got) != 1 || got[0] != "stripe" {
		t.Fatalf("bound to api.stripe.com: %v", got)
	}
	if got := names("api.stripe.com"); len(got) != 1 {
		t.Fatalf("second answer differs: %v", got)
	}
	if got := names("evil.test"); len(got) != 0 {
		t.Fatalf("bound to evil.test: %v", got)
	}
	putBearer(t, v, "stripe-b", "sk_b", "api.stripe.com")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := names("api.stripe.com"); len(got) != 2 {
		t.Fatalf("after Reload, bound to api.stripe.com: %v, want both credentials", got)
	}
}

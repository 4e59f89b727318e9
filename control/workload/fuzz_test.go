package workload_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/control/workload"
	"github.com/stackctl/stack/internal/oidctest"
)

// FuzzVerify feeds raw token text to Verify, which must refuse or accept
// without panicking, give every refusal a reason and never quote a long
// token back.
func FuzzVerify(f *testing.F) {
	kube := oidctest.NewIssuer(f)
	v := newVerifier(f, workload.Options{}, kubeIssuer(kube))
	good := kube.ServiceAccountToken(f, "billing", "bot", oidctest.TokenOptions{Pod: "bot-1"})
	mustVerify(f, v, good)
	parts := strings.Split(good, ".")
	claims := `{"iss":"` + kube.URL() + `","sub":"s","aud":"stack","exp":4102444800}`
	for _, seed := range []string{
		good,
		kube.ServiceAccountToken(f, "billing", "bot", oidctest.TokenOptions{IssuedAt: time.Now().Add(-2 * time.Hour)}),
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + b64(claims) + "." + parts[2],
		b64(`{"alg":"none"}`) + "." + b64(claims) + ".",
		b64(`{"alg":"RS256","kid":"x"}`) + "." + b64(`{"iss":"`+kube.URL()+`","aud":["stack"],"exp":"soon"}`) + ".c2ln",
		b64(`{"alg":"RS256"}`) + "." + b64(`{"iss":{"a":1}}`) + ".",
		"", ".", "..", "a.b.c", "eyJ9.eyJ9.eyJ9",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		id, err := v.Verify(ctx, raw)
		if err == nil {
			if id.Agent == "" || id.Issuer != kube.URL() || id.Subject == "" {
				t.Fatalf("accepted with identity %+v", id)
			}
			return
		}
		if workload.Reason(err) == "" {
			t.Fatalf("refusal without a reason: %v", err)
		}
		if len(raw) >= 1024 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error quotes the token")
		}
	})
}

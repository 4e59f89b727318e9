// Command go-agent is a minimal billing agent that uses the official
// stripe-go SDK through a STACK sidecar. It never holds the real Stripe key:
// it is configured only by its environment, and the key it passes to the
// SDK is the placeholder stk_ph_stripe, which the sidecar swaps for the real
// secret on the way to api.stripe.com.
//
// Environment:
//
//	HTTPS_PROXY      the sidecar, e.g. http://billing-bot:PASSPORT@127.0.0.1:8080
//	                 (agent id and passport as user info)
//	STACK_PASSPORT   optional: the passport, sent as Proxy-Authorization:
//	                 Bearer, when HTTPS_PROXY carries no user info
//	SSL_CERT_FILE    the CA bundle holding the sidecar's CA (stack ca export)
//	STRIPE_API_KEY   the placeholder, stk_ph_stripe (the default)
//	STRIPE_API_BASE  optional: the API base URL (default https://api.stripe.com)
//
// It reads the balance, creates a small test charge, prints one line about
// each and exits 0, or prints the error and exits 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v82"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "go-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	key := envOr("STRIPE_API_KEY", "stk_ph_stripe")
	if !strings.HasPrefix(key, "stk_ph_") {
		// The whole point: an agent behind STACK holds placeholders only.
		return errors.New("STRIPE_API_KEY must be a STACK placeholder such as stk_ph_stripe, not a real key")
	}
	if os.Getenv("HTTPS_PROXY") == "" && os.Getenv("https_proxy") == "" {
		return errors.New("HTTPS_PROXY is not set: point it at the STACK sidecar")
	}

	// http.DefaultTransport already reads HTTPS_PROXY (its user info becomes
	// Proxy-Authorization: Basic on the CONNECT) and Go reads SSL_CERT_FILE
	// for its roots. A passport given separately goes on the CONNECT too.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if p := strings.TrimSpace(os.Getenv("STACK_PASSPORT")); p != "" {
		tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {"Bearer " + p}}
	}
	rt := &reasonTransport{base: tr}
	cfg := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Transport: rt, Timeout: 30 * time.Second},
		MaxNetworkRetries: stripe.Int64(0), // a refusal by the sidecar is final
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if base := os.Getenv("STRIPE_API_BASE"); base != "" {
		cfg.URL = stripe.String(strings.TrimRight(base, "/"))
	}
	sc := stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(cfg)))

	bal, err := sc.V1Balance.Retrieve(ctx, &stripe.BalanceRetrieveParams{})
	if err != nil {
		return fmt.Errorf("retrieve balance: %w", rt.explain(err))
	}
	var available int64
	for _, a := range bal.Available {
		available += a.Amount
	}
	fmt.Printf("balance: %d available in %d currencies\n", available, len(bal.Available))

	ch, err := sc.V1Charges.Create(ctx, &stripe.ChargeCreateParams{
		Amount:      stripe.Int64(2000),
		Currency:    stripe.String(string(stripe.CurrencyUSD)),
		Source:      &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")},
		Description: stripe.String("stack example"),
	})
	if err != nil {
		return fmt.Errorf("create charge: %w", rt.explain(err))
	}
	fmt.Printf("charge: %s %d %s %s (%s)\n", ch.ID, ch.Amount, ch.Currency, ch.Status, ch.Description)
	return nil
}

// reasonTransport remembers the X-Stack-Reason of the last response that
// carried one: the SDK's own error for a refusal by the sidecar (whose
// body is not in Stripe's error format) does not say why.
type reasonTransport struct {
	base   http.RoundTripper
	reason atomic.Value // string
}

func (t *reasonTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if resp != nil {
		if r := resp.Header.Get("X-Stack-Reason"); r != "" {
			t.reason.Store(fmt.Sprintf("%s (HTTP %d)", r, resp.StatusCode))
		}
	}
	return resp, err
}

// explain adds the sidecar's reason to an error, when the sidecar refused
// the request rather than Stripe.
func (t *reasonTransport) explain(err error) error {
	if r, _ := t.reason.Load().(string); r != "" {
		return fmt.Errorf("refused by the STACK sidecar: X-Stack-Reason %s: %w", r, err)
	}
	return err
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

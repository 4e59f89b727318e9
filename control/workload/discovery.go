package workload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// signingAlgs are the algorithms a token may be signed with, set
// explicitly rather than taken from what the discovery document
// advertises. Kubernetes signs with RS256.
var signingAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.EdDSA}

// issuer is one configured issuer and, once discovered, its verifier.
type issuer struct {
	url      string
	audience string
	rules    []rule
	client   *http.Client
	v        *Verifier

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // nil until discovery succeeds
	flight   *discoveryFlight      // non-nil while a discovery runs
}

// discoveryFlight is one discovery that concurrent callers wait for.
type discoveryFlight struct {
	done chan struct{} // closed when the fields below are set
	err  error
	// abandoned: the discovery failed because the caller running it gave
	// up, which says nothing about the issuer.
	abandoned bool
}

// tokenVerifier returns the issuer's verifier, discovering the issuer on
// first use. Only one discovery runs at a time; a failed one is tried
// again by a later call, so an issuer that comes back is picked up.
func (is *issuer) tokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	for {
		is.mu.Lock()
		verifier, f := is.verifier, is.flight
		if verifier != nil {
			is.mu.Unlock()
			return verifier, nil
		}
		if f == nil {
			f = &discoveryFlight{done: make(chan struct{})}
			is.flight = f
			is.mu.Unlock()
			return is.runDiscovery(ctx, f)
		}
		is.mu.Unlock()

		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.done:
		}
		if f.abandoned {
			continue
		}
		if f.err != nil {
			return nil, f.err
		}
	}
}

func (is *issuer) runDiscovery(ctx context.Context, f *discoveryFlight) (*oidc.IDTokenVerifier, error) {
	verifier, err := is.discover(ctx)
	is.mu.Lock()
	if err == nil {
		is.verifier = verifier
	}
	is.flight = nil
	is.mu.Unlock()
	f.err = err
	f.abandoned = err != nil && ctx.Err() != nil
	close(f.done)
	return verifier, err
}

// discover fetches the discovery document and builds a verifier on the
// key set it names. go-oidc fetches the keys when a token first needs
// them, caches them, and fetches again when a token names an unknown kid.
func (is *issuer) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, is.client), is.url)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	if err := checkIssuerURL(meta.JWKSURI); err != nil {
		return nil, fmt.Errorf("discovery document: jwks_uri: %w", err)
	}
	// The key set outlives this call: it fetches with the client alone,
	// not with this caller's context.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), is.client), meta.JWKSURI)
	return oidc.NewVerifier(is.url, keySet{keys}, &oidc.Config{
		ClientID:             is.audience,
		SupportedSigningAlgs: signingAlgs,
		// go-oidc allows no skew on exp: moving its clock back by the
		// leeway gives exp the same tolerance nbf gets in Verify.
		Now: func() time.Time { return is.v.now().Add(-is.v.leeway) },
	}), nil
}

// keySet wraps go-oidc's remote key set to tell, for one Verify, a key
// set that could not be fetched from a signature no key verifies:
// IDTokenVerifier flattens both into one error string.
type keySet struct{ remote *oidc.RemoteKeySet }

// verifyNote is where keySet leaves what it saw, one per Verify call.
type verifyNote struct {
	signed   bool  // a key verified the signature
	fetchErr error // the key set could not be fetched
}

type noteKey struct{}

func (k keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if note, ok := ctx.Value(noteKey{}).(*verifyNote); ok {
		switch {
		case err == nil:
			note.signed = true
		case fetchFailed(err):
			note.fetchErr = err
		}
	}
	return payload, err
}

// fetchFailed says whether a RemoteKeySet error means the keys could not
// be fetched. RemoteKeySet wraps a failed fetch with %w and returns a bare
// error when the keys it has do not verify the signature; the typed checks
// keep the common failures classified should that change.
func fetchFailed(err error) bool {
	var urlErr *url.Error
	return errors.As(err, &urlErr) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Unwrap(err) != nil
}

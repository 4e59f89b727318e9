package workload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Defaults and limits of a Verifier.
const (
	// DefaultAudience is the aud a token must carry when an Issuer names
	// none: Kubernetes projected tokens are requested with it.
	DefaultAudience = "stack"
	// DefaultLeeway is the clock skew tolerated on exp and nbf.
	DefaultLeeway = 30 * time.Second
	// DefaultHTTPTimeout bounds each request to an issuer.
	DefaultHTTPTimeout = 10 * time.Second
	// MaxTokenSize bounds a token before any parsing. Kubernetes tokens
	// are about 1 KiB; GitHub Actions tokens about 2 KiB.
	MaxTokenSize = 16 << 10
	// maxResponseSize bounds a discovery document or key set.
	maxResponseSize = 1 << 20
)

// Rule maps the tokens whose claims all match to an agent.
type Rule struct {
	// Agent is the agent the workload acts as.
	Agent string
	// Claims maps a claim path to the value it must have. Paths use '/'
	// between levels, so "kubernetes.io/serviceaccount/name" reads
	// claims["kubernetes.io"]["serviceaccount"]["name"]. A value may use
	// path.Match globs ('*' does not cross '/'). Every claim must match;
	// a rule needs at least one.
	Claims map[string]string
}

// Issuer is one OIDC issuer whose tokens may join, and how its workloads
// map to agents.
type Issuer struct {
	// URL is the issuer, exactly as in the token's iss and the issuer's
	// discovery document. It must be https (http only on loopback).
	URL string
	// Audience must appear in the token's aud (default DefaultAudience).
	Audience string
	// RootCAs verify the issuer's HTTPS (nil: the system roots).
	RootCAs *x509.CertPool
	// Rules map tokens to agents; the first that matches wins.
	Rules []Rule
}

// Options configure New. Zero values take the defaults.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HTTPClient is the base of the clients that fetch discovery
	// documents and keys: its Timeout (zero: DefaultHTTPTimeout),
	// redirect policy and Transport are kept. A nil client or Transport
	// means a transport of our own that ignores the proxy environment
	// variables. The Transport must be an *http.Transport for an issuer
	// with RootCAs, which are set on a clone of it.
	HTTPClient *http.Client
	// Leeway is the clock skew tolerated on exp and nbf (default
	// DefaultLeeway; negative means none).
	Leeway time.Duration
}

// Identity is the agent a verified token acts as.
type Identity struct {
	// Agent is the agent of the first rule that matched.
	Agent string
	// Issuer and Subject are the token's iss and sub.
	Issuer  string
	Subject string
	// Expiry is the token's exp: the identity holds no longer.
	Expiry time.Time
	// Claims are all of the token's claims, numbers as json.Number so
	// that large ids keep every digit.
	Claims map[string]any
}

// Verifier checks workload tokens against the configured issuers. It is
// safe for concurrent use.
type Verifier struct {
	issuers map[string]*issuer // by URL
	now     func() time.Time
	leeway  time.Duration
}

// New checks the configuration and builds a Verifier. It makes no
// request: each issuer is discovered by the first Verify that needs it, so
// an issuer that is down now does not stop the control plane starting.
func New(issuers []Issuer, opts Options) (*Verifier, error) {
	v := &Verifier{issuers: map[string]*issuer{}, now: opts.Now, leeway: opts.Leeway}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	var errs []error
	if len(issuers) == 0 {
		errs = append(errs, errors.New("no issuers"))
	}
	for n, cfg := range issuers {
		name := fmt.Sprintf("issuers[%d]", n)
		if cfg.URL != "" {
			name += " (" + cfg.URL + ")"
		}
		is, problems := newIssuer(cfg, opts.HTTPClient, v)
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", name, p))
		}
		if _, dup := v.issuers[cfg.URL]; dup {
			errs = append(errs, fmt.Errorf("%s: issuer configured twice", name))
		}
		if is != nil {
			v.issuers[cfg.URL] = is
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("workload: %w:\n%w", ErrConfig, errors.Join(errs...))
	}
	return v, nil
}

// newIssuer validates one issuer's configuration and returns every
// problem, or the issuer.
func newIssuer(cfg Issuer, base *http.Client, v *Verifier) (*issuer, []error) {
	var errs []error
	if err := checkIssuerURL(cfg.URL); err != nil {
		errs = append(errs, err)
	}
	if len(cfg.Rules) == 0 {
		errs = append(errs, errors.New("no rules: a token would verify but map to no agent"))
	}
	rules := make([]rule, 0, len(cfg.Rules))
	for n, r := range cfg.Rules {
		compiled, problems := compileRule(r)
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("rules[%d]: %w", n, p))
		}
		rules = append(rules, compiled)
	}
	client, err := issuerClient(base, cfg.RootCAs)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	aud := cfg.Audience
	if aud == "" {
		aud = DefaultAudience
	}
	return &issuer{url: cfg.URL, audience: aud, rules: rules, client: client, v: v}, nil
}

// checkIssuerURL accepts https URLs, and http ones only on loopback where
// nothing crosses a network.
func checkIssuerURL(raw string) error {
	if raw == "" {
		return errors.New("no URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL: %w", err)
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("URL %q has no host", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("URL %q must not carry user info, a query or a fragment", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("URL %q: http is allowed only for loopback hosts; use https", raw)
	default:
		return fmt.Errorf("URL %q: scheme must be https", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// rule is a Rule with its claims split into paths, in a fixed order so
// that messages read the same every time.
type rule struct {
	agent  string
	claims []claimMatch
}

type claimMatch struct {
	path string   // as configured, for messages
	segs []string // path split at '/'
	glob string
}

func compileRule(r Rule) (rule, []error) {
	var errs []error
	if r.Agent == "" {
		errs = append(errs, errors.New("no agent"))
	}
	if len(r.Claims) == 0 {
		// An issuer such as GitHub's signs tokens for every workload on
		// the platform: a rule without claims would let all of them in.
		errs = append(errs, fmt.Errorf("agent %q: no claims: the rule would map every token the issuer signs", r.Agent))
	}
	out := rule{agent: r.Agent}
	for _, p := range slices.Sorted(maps.Keys(r.Claims)) {
		glob := r.Claims[p]
		segs := strings.Split(p, "/")
		if p == "" || slices.Contains(segs, "") {
			errs = append(errs, fmt.Errorf("agent %q: claim path %q has an empty name", r.Agent, p))
		}
		if _, err := path.Match(glob, ""); err != nil {
			errs = append(errs, fmt.Errorf("agent %q: claim %q: pattern %q: %w", r.Agent, p, glob, err))
		}
		out.claims = append(out.claims, claimMatch{path: p, segs: segs, glob: glob})
	}
	return out, errs
}

// issuerClient derives an issuer's HTTP client from the base: our own
// transport unless the caller gave one, the issuer's roots, a timeout,
// and bounded response bodies.
func issuerClient(base *http.Client, roots *x509.CertPool) (*http.Client, error) {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultHTTPTimeout
	}
	var rt http.RoundTripper
	switch t := c.Transport.(type) {
	case nil:
		rt = &http.Transport{
			// The default transport would read HTTPS_PROXY from the
			// environment; a proxy is the caller's choice to make.
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: DefaultHTTPTimeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		}
	case *http.Transport:
		tr := t.Clone()
		if roots != nil {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = roots
		}
		rt = tr
	default:
		if roots != nil {
			return nil, fmt.Errorf("RootCAs need Options.HTTPClient.Transport to be an *http.Transport, not %T", t)
		}
		rt = t
	}
	c.Transport = limitedTransport{rt}
	return c, nil
}

// limitedTransport bounds response bodies: go-oidc reads them whole.
type limitedTransport struct{ rt http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	// One byte over the limit tells a body of exactly the limit from a
	// longer one.
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxResponseSize + 1}
	return resp, nil
}

var errResponseTooLarge = fmt.Errorf("response larger than %d bytes", maxResponseSize)

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left <= 0 {
		return n, errResponseTooLarge
	}
	return n, err
}

package inject

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// Prefix starts every placeholder: stk_ph_<credential-name>.
const Prefix = "stk_ph_"

// placeholders calls fn with the credential name of every placeholder in
// text, left to right: Prefix followed by one or more letters, digits, '_'
// or '-' (the longest such run). It runs on every header of every request,
// so it is a byte scan rather than a regular expression.
func placeholders(text string, fn func(name string)) {
	for {
		i := strings.Index(text, Prefix)
		if i < 0 {
			return
		}
		text = text[i+len(Prefix):]
		n := 0
		for n < len(text) && nameByte(text[n]) {
			n++
		}
		if n > 0 {
			fn(text[:n])
		}
		text = text[n:]
	}
}

// containsPlaceholderFor reports whether text contains Placeholder(name),
// without building it.
func containsPlaceholderFor(text, name string) bool {
	for {
		i := strings.Index(text, Prefix)
		if i < 0 {
			return false
		}
		text = text[i+len(Prefix):]
		if strings.HasPrefix(text, name) {
			return true
		}
	}
}

// mayHoldPlaceholder reports whether a query string could hold a
// placeholder once decoded: only if it has one as sent, or escapes.
func mayHoldPlaceholder(rawQuery string) bool {
	return strings.IndexByte(rawQuery, '%') >= 0 || strings.Contains(rawQuery, Prefix)
}

// urlParts calls fn with each part of u a placeholder could hide in, and
// with the decoded path. The parts are scanned one by one rather than as
// u.String(), which would cost an allocation on every request; no
// placeholder can span two parts, since the separators between them are
// not name bytes.
func urlParts(u *url.URL, fn func(string)) {
	fn(u.Scheme)
	fn(u.Opaque)
	if u.User != nil {
		fn(u.User.Username())
		if p, ok := u.User.Password(); ok {
			fn(p)
		}
	}
	fn(u.Host)
	fn(u.EscapedPath())
	fn(u.RawQuery)
	fn(u.EscapedFragment())
	fn(u.Path)
}

// hasPlaceholder reports whether text holds a placeholder.
func hasPlaceholder(text string) bool {
	found := false
	placeholders(text, func(string) { found = true })
	return found
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// Placeholder returns the placeholder an agent holds for credential name.
func Placeholder(name string) string { return Prefix + name }

// Kind says where a rendered credential goes.
type Kind int

// Render kinds.
const (
	Bearer Kind = iota + 1 // Authorization: Bearer {secret}
	Basic                  // Authorization: Basic base64({secret}); secret is user:password
	Header                 // NAME: TEMPLATE with {secret}
	Query                  // ?NAME={secret}
	SigV4                  // the agent's AWS SigV4 signature, made again with minted keys
)

// Render is how a credential is written into a request.
type Render struct {
	Kind Kind
	// Name is the header (Header) or query parameter (Query).
	Name string
	// Template is the header value, with {secret} where the secret goes
	// (Header only); "token {secret}" writes a GitHub-style header.
	Template string
}

// Credential is what the injector knows of a vault credential: never the
// secret, which it asks Secrets for only when it injects.
type Credential struct {
	Name  string
	Hosts []string // hostmatch patterns: api.stripe.com, *.stripe.com
	// Render says where and how the secret is written.
	Render Render
	// Fingerprint identifies the secret in audit records.
	Fingerprint string
	// Kind is the credential's kind (mint.KindStatic or a minting kind).
	Kind string
}

// BoundTo reports whether the credential may be sent to host (as a
// request names it, port and all).
func (c *Credential) BoundTo(host string) bool {
	return hostmatch.MatchAny(c.Hosts, host)
}

// Grant is what the passport says about one credential for the request
// being injected: whose it is and how far its minted form is narrowed.
type Grant struct {
	Agent  string
	Narrow *passport.Narrowing
}

// Store answers what the injector needs from the vault.
type Store interface {
	// Credential returns the credential called name, or false.
	Credential(name string) (Credential, bool)
	// Secret returns what to render for credential name under g: a
	// static credential's secret (decrypted if needed), or a short-lived
	// credential minted from its root material for g.
	Secret(ctx context.Context, name string, g Grant) (mint.Token, error)
	// BoundCredentials lists the credentials bound to host. The slice may
	// be shared: callers must not modify it.
	BoundCredentials(host string) []Credential
}

// AgentAuth says what happens to credentials an agent sets itself on a
// request to a host that has a credential bound to it.
type AgentAuth int

const (
	// AgentAuthRefuse refuses the request: an agent may not smuggle its
	// own key to a host whose credential the proxy manages.
	AgentAuthRefuse AgentAuth = iota
	// AgentAuthOverwrite replaces the agent's value with the rendered
	// credential when the passport grants one, and refuses otherwise.
	AgentAuthOverwrite
)

// DefaultHeaders are the headers, besides Authorization, searched for
// placeholders and guarded against agent-set keys.
var DefaultHeaders = []string{"X-Api-Key", "Api-Key", "X-Auth-Token", "Private-Token", "X-Goog-Api-Key", "Anthropic-Api-Key"}

// Options configure an Injector.
type Options struct {
	// Headers searched for placeholders besides Authorization; nil means
	// DefaultHeaders. Names are case-insensitive.
	Headers []string
	// AgentAuth is the policy for keys the agent sets itself.
	AgentAuth AgentAuth
}

// Injector replaces placeholders in requests with real credentials.
type Injector struct {
	store     Store
	headers   []string // canonical names
	agentAuth AgentAuth
}

// New returns an Injector reading credentials from store.
func New(store Store, opts Options) *Injector {
	hs := opts.Headers
	if hs == nil {
		hs = DefaultHeaders
	}
	canon := make([]string, 0, len(hs))
	for _, h := range hs {
		c := textproto.CanonicalMIMEHeaderKey(h)
		if c != "Authorization" {
			canon = append(canon, c)
		}
	}
	return &Injector{store: store, headers: canon, agentAuth: opts.AgentAuth}
}

// Injected is one credential written into a request.
type Injected struct {
	Name        string
	Fingerprint string
	// Secret is kept so responses can be scrubbed of it; never log it.
	Secret []byte
	// Expires is when a minted credential expires (zero for static).
	Expires time.Time
	// Operation is the AWS action a re-signed request performs
	// ("s3:GetObject"), for the audit record.
	Operation string
}

// Result lists what Apply injected.
type Result struct {
	Injected []Injected
	// Placeholders are the credential names of every placeholder seen in
	// the URL and headers, injected or not.
	Placeholders []string
}

// Granted reports whether the passport grants credential name for the
// request being injected, and how.
type Granted func(name string) (Grant, bool)

// Apply finds placeholders in req's Authorization header, the configured
// headers and the query, and replaces each with the real credential
// rendered as it says, when the credential exists, is bound to host and
// granted. Any placeholder elsewhere in the URL or headers headed to a host
// its credential is not bound to is refused; placeholders inside bodies
// are never substituted. A SigV4 credential's signature is made last, over
// every other credential written into req. On error req may be partly
// modified and must not be forwarded. Apply replaces or deletes header
// values and never changes one in place, so a shallow copy of req.Header
// taken before keeps the headers as the agent sent them.
func (in *Injector) Apply(ctx context.Context, req *http.Request, host string, granted Granted) (*Result, error) {
	// seen: every placeholder anywhere in the URL or headers, so none can
	// leave for a host its credential is not bound to. sub: those in the
	// places a credential is substituted.
	seen, sub := nameSet{}, nameSet{}
	urlParts(req.URL, func(s string) {
		if strings.IndexByte(s, '%') >= 0 {
			if raw, err := urlUnescapeAll(s); err == nil {
				s = raw
			}
		}
		seen.addAll(s)
	})
	for k, vs := range req.Header {
		for _, v := range vs {
			seen.addAll(v)
		}
		if k == "Authorization" {
			for _, v := range vs {
				sub.addAll(v)
				for _, name := range basicPlaceholders(v) {
					sub.add(name)
				}
			}
		}
	}
	for _, h := range in.headers {
		for _, v := range req.Header[h] {
			sub.addAll(v)
		}
	}
	if !mayHoldPlaceholder(req.URL.RawQuery) {
		// No placeholder, even once decoded: nothing to parse.
	} else if q, err := url.ParseQuery(req.URL.RawQuery); err == nil {
		for _, vs := range q {
			for _, v := range vs {
				sub.addAll(v)
			}
		}
	} else if raw, err := url.QueryUnescape(req.URL.RawQuery); err == nil {
		seen.addAll(raw)
	}
	for _, name := range sub.order {
		seen.add(name)
	}

	for _, name := range seen.order {
		c, ok := in.store.Credential(name)
		if !ok {
			return nil, &DeniedError{Reason: reason.PlaceholderUnknown, Credential: name,
				Detail: fmt.Sprintf("no credential named %q in the vault", name)}
		}
		if !c.BoundTo(host) {
			return nil, &DeniedError{Reason: reason.PlaceholderUnbound, Credential: name,
				Detail: fmt.Sprintf("credential %q is not bound to host %s", name, host)}
		}
	}
	creds := make([]Credential, 0, len(sub.order))
	grants := make([]Grant, 0, len(sub.order))
	for _, name := range sub.order {
		c, _ := in.store.Credential(name)
		var g Grant
		ok := false
		if granted != nil {
			g, ok = granted(name)
		}
		if !ok {
			return nil, &DeniedError{Reason: reason.ScopeDenied, Credential: name,
				Detail: fmt.Sprintf("the passport does not grant credential %q for this request", name)}
		}
		creds = append(creds, c)
		grants = append(grants, g)
	}
	// An AWS signature is checked against the grant before anything is
	// minted: a request the session could not make is refused here.
	var aws []*awsRequest
	for i, c := range creds {
		if c.Render.Kind != SigV4 {
			continue
		}
		a, err := prepareAWS(req, c, grants[i])
		if err != nil {
			return nil, err
		}
		aws = append(aws, a)
	}
	if len(aws) > 1 {
		return nil, &DeniedError{Reason: reason.ScopeDenied, Credential: aws[1].cred.Name,
			Detail: "a request carries one AWS signature, not two credentials' placeholders"}
	}
	if len(aws) == 1 {
		for _, c := range creds {
			if c.Render.Kind != SigV4 && sameTarget(c.Render, aws[0].cred.Render) {
				return nil, &DeniedError{Reason: reason.ScopeDenied, Credential: c.Name,
					Detail: fmt.Sprintf("credential %q renders into Authorization, where the AWS signature of credential %q goes", c.Name, aws[0].cred.Name)}
			}
		}
	}

	// Keys the agent set itself for a host whose credential we manage.
	if err := in.checkAgentAuth(req, host, creds); err != nil {
		return nil, err
	}

	// The AWS signature is made last, over the request as it leaves: a
	// credential written after it would change what it covers, or go
	// unsigned.
	order := make([]int, 0, len(creds))
	for i, c := range creds {
		if c.Render.Kind != SigV4 {
			order = append(order, i)
		}
	}
	for i, c := range creds {
		if c.Render.Kind == SigV4 {
			order = append(order, i)
		}
	}
	res := &Result{Placeholders: seen.order}
	for _, i := range order {
		c := creds[i]
		tok, err := in.store.Secret(ctx, c.Name, grants[i])
		if err != nil {
			return nil, unavailable(c, err)
		}
		inj := Injected{Name: c.Name, Fingerprint: c.Fingerprint, Secret: tok.Secret(), Expires: tok.Expiry}
		if c.Render.Kind == SigV4 {
			a := aws[0]
			if err := a.resign(req, tok); err != nil {
				return nil, err
			}
			inj.Operation = a.operation()
		} else {
			in.scrub(req, c.Name)
			if err := write(req, c, tok.Value); err != nil {
				return nil, err
			}
		}
		res.Injected = append(res.Injected, inj)
	}
	return res, nil
}

// unavailable is the refusal for a credential the store could not give:
// a narrowing the credential cannot honour (mint.ErrNarrow, whose message
// is the agent's to read) is a scope denial; anything else, root material
// or parameters that do not work included, fails closed as unavailable,
// its cause for the log only.
func unavailable(c Credential, err error) error {
	if errors.Is(err, mint.ErrNarrow) {
		return &DeniedError{Reason: reason.ScopeDenied, Credential: c.Name,
			Detail: fmt.Sprintf("credential %q cannot be minted as the passport narrows it: %v", c.Name, err), Err: err}
	}
	detail := "credential is unavailable (not decrypted, or its lease expired)"
	if mint.Minted(c.Kind) {
		detail = fmt.Sprintf("credential %q could not be minted now (its issuer refused or is unreachable, or its lease expired)", c.Name)
	}
	return &DeniedError{Reason: reason.CredentialUnavailable, Credential: c.Name, Detail: detail, Err: err}
}

// checkAgentAuth refuses requests that carry their own value in a header
// or parameter a bound credential renders into, unless that value is one
// of the placeholders being injected (or the policy overwrites it).
func (in *Injector) checkAgentAuth(req *http.Request, host string, injecting []Credential) error {
	bound := in.store.BoundCredentials(host)
	if len(bound) == 0 {
		return nil
	}
	for _, c := range bound {
		target, value, present := renderTarget(req, c.Render)
		if !present {
			continue
		}
		if hasPlaceholder(value) || containsBasicPlaceholder(c.Render, value) {
			continue
		}
		if in.agentAuth == AgentAuthOverwrite && injectingRenderInto(injecting, c.Render) {
			continue
		}
		return &DeniedError{Reason: reason.AgentCredentialRefused, Credential: c.Name,
			Detail: fmt.Sprintf("the agent set %s itself for %s, where credential %q is managed; send %s instead", target, host, c.Name, Placeholder(c.Name))}
	}
	return nil
}

func injectingRenderInto(injecting []Credential, r Render) bool {
	for _, c := range injecting {
		if sameTarget(c.Render, r) {
			return true
		}
	}
	return false
}

func sameTarget(a, b Render) bool {
	ta, tb := a.target(), b.target()
	return strings.EqualFold(ta, tb)
}

// target names the header or parameter a render writes.
func (r Render) target() string {
	switch r.Kind {
	case Bearer, Basic, SigV4:
		return "header Authorization"
	case Header:
		return "header " + textproto.CanonicalMIMEHeaderKey(r.Name)
	case Query:
		return "query parameter " + r.Name
	}
	return ""
}

func renderTarget(req *http.Request, r Render) (target, value string, present bool) {
	switch r.Kind {
	case Bearer, Basic, SigV4:
		v := req.Header.Get("Authorization")
		return r.target(), v, v != ""
	case Header:
		v := req.Header.Get(r.Name)
		return r.target(), v, v != ""
	case Query:
		q := req.URL.Query()
		return r.target(), q.Get(r.Name), q.Has(r.Name)
	}
	return "", "", false
}

func containsBasicPlaceholder(r Render, v string) bool {
	return len(basicPlaceholders(v)) > 0
}

// basicPlaceholders returns credential names of placeholders inside a
// Basic Authorization value (user or password), where SDKs such as
// Stripe's older clients put API keys.
func basicPlaceholders(v string) []string {
	scheme, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return nil
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return nil
	}
	var names []string
	placeholders(string(dec), func(name string) { names = append(names, name) })
	return names
}

// scrub removes every place the agent put the placeholder for name, so the
// rendered credential is the only copy that leaves.
func (in *Injector) scrub(req *http.Request, name string) {
	if v := req.Header.Get("Authorization"); containsPlaceholderFor(v, name) || containsName(basicPlaceholders(v), name) {
		req.Header.Del("Authorization")
	}
	for _, h := range in.headers {
		if containsPlaceholderFor(req.Header.Get(h), name) {
			req.Header.Del(h)
		}
	}
	if containsPlaceholderFor(req.URL.RawQuery, name) {
		ph := Placeholder(name)
		q := req.URL.Query()
		for k, vs := range q {
			for _, v := range vs {
				if strings.Contains(v, ph) {
					q.Del(k)
					break
				}
			}
		}
		req.URL.RawQuery = q.Encode()
	}
}

func containsName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// write renders secret into req as c says.
func write(req *http.Request, c Credential, secret []byte) error {
	switch c.Render.Kind {
	case Bearer:
		req.Header.Set("Authorization", "Bearer "+string(secret))
	case Basic:
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(secret))
	case Header:
		req.Header.Set(c.Render.Name, strings.ReplaceAll(c.Render.Template, "{secret}", string(secret)))
	case Query:
		q := req.URL.Query()
		q.Set(c.Render.Name, string(secret))
		req.URL.RawQuery = q.Encode()
	default:
		return &DeniedError{Reason: reason.CredentialUnavailable, Credential: c.Name, Detail: "credential has no render"}
	}
	return nil
}

// nameSet collects credential names in first-seen order. A request
// names one or two credentials, so a slice beats a map.
type nameSet struct {
	order []string
}

func (s *nameSet) add(name string) {
	if !slices.Contains(s.order, name) {
		s.order = append(s.order, name)
	}
}

// addAll adds the names of every placeholder in text.
func (s *nameSet) addAll(text string) { placeholders(text, s.add) }

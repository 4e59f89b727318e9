package passport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"path"
	"strings"
)

// Request is what Scope.Allows looks at: one HTTP request as the proxy sees
// it after MITM.
type Request struct {
	// Host is the request's host, with or without port.
	Host string
	// Method is the HTTP method as sent (compared case-sensitively).
	Method string
	// Path is the URL path as sent (escaped form, without the query). It is
	// percent-decoded and cleaned before matching.
	Path string
	// Query holds the query parameters.
	Query url.Values
	// Body is the (decoded) request body, nil when none; JSON objects and
	// form-encoded bodies are understood.
	Body []byte
	// ContentType is the request's Content-Type header.
	ContentType string
	// Credential is the vault credential the request would have injected,
	// empty when none.
	Credential string
}

// Decision is the answer of Scope.Allows.
type Decision struct {
	// Allowed is true when one grant allows the request.
	Allowed bool
	// Grant is the index of the allowing grant, or of the grant that came
	// closest when denied (-1 when no grant names the host).
	Grant int
	// Reason says what failed when denied: "host not granted",
	// "method not granted", "path not granted", "credential not granted",
	// or which parameter failed which operator. It never echoes parameter
	// values.
	Reason string
}

// Stages of a grant's check, in order; a denial reports the grant that got
// furthest, since that reason is the most useful one.
const (
	stageHost = iota
	stageMethod
	stagePath
	stageCredential
	stageParams
	stageAllowed
)

// Allows reports whether any grant of s allows r. An empty scope allows
// nothing. Request paths are percent-decoded once and cleaned; paths that
// are ambiguous to upstream servers (nested percent-encoding, backslashes,
// control characters, "..;" segments) are denied outright.
func (s Scope) Allows(r Request) Decision {
	host := normalizeHost(r.Host)
	cleanPath, pathErr := cleanRequestPath(r.Path)
	body := lazyBody{raw: r.Body, contentType: r.ContentType}

	// The reason is formatted only for a denial: Allows runs on every
	// request, most of which are allowed.
	best, bestStage := Decision{Grant: -1}, stageHost
	for i := range s {
		stage, reason := s[i].check(host, r, cleanPath, pathErr, &body)
		if stage == stageAllowed {
			return Decision{Allowed: true, Grant: i}
		}
		if stage > bestStage {
			best, bestStage = Decision{Grant: i, Reason: reason}, stage
		}
	}
	if bestStage == stageHost {
		best.Reason = "host not granted: " + host
	}
	return best
}

func (g *Grant) check(host string, r Request, cleanPath string, pathErr error, body *lazyBody) (int, string) {
	if !g.matchHost(host) {
		return stageHost, ""
	}
	if len(g.Methods) > 0 && !contains(g.Methods, r.Method) {
		return stageMethod, fmt.Sprintf("method not granted: %s", r.Method)
	}
	if pathErr != nil {
		return stagePath, fmt.Sprintf("path refused: %v", pathErr)
	}
	if len(g.Paths) > 0 && !anyPathMatch(g.Paths, cleanPath) {
		return stagePath, fmt.Sprintf("path not granted: %s", cleanPath)
	}
	if r.Credential != "" && !contains(g.Credentials, r.Credential) {
		return stageCredential, fmt.Sprintf("credential not granted: %s", r.Credential)
	}
	for _, pc := range g.Params {
		var values []string
		var ok bool
		var missing string
		if pc.From == FromQuery {
			values, ok = r.Query[pc.Name]
			missing = "missing from query"
		} else {
			values, ok, missing = body.field(pc.Name)
		}
		if !ok || len(values) == 0 {
			return stageParams, fmt.Sprintf("param %s (%s): %s", pc.Name, pc.From, missing)
		}
		// Every value must pass: which of several an upstream honours is
		// not ours to guess.
		for _, v := range values {
			if !pc.holds(v) {
				return stageParams, fmt.Sprintf("param %s (%s): %s failed", pc.Name, pc.From, pc.Op)
			}
		}
	}
	return stageAllowed, ""
}

func (g *Grant) matchHost(host string) bool {
	for _, p := range g.Hosts {
		if p == host || matchHostPattern(normalizeHostPattern(p), host) {
			return true
		}
	}
	return false
}

// holds evaluates the constraint on one value. An invalid regex holds for
// nothing.
func (pc ParamConstraint) holds(v string) bool {
	switch pc.Op {
	case OpEq:
		return v == pc.Value
	case OpIn:
		return contains(pc.Values, v)
	case OpPrefix:
		return pc.Value != "" && strings.HasPrefix(v, pc.Value)
	case OpRegex:
		re, err := compileParamRegex(pc.Value)
		return err == nil && re.MatchString(v)
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// normalizeHostPattern lower-cases a grant's host and drops a trailing dot
// and IPv6 brackets.
func normalizeHostPattern(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimSuffix(h, ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return h
}

// normalizeHost lower-cases a request host and strips its port, IPv6
// brackets and trailing dot.
func normalizeHost(h string) string {
	h = strings.ToLower(h)
	switch {
	case strings.HasPrefix(h, "["):
		if end := strings.IndexByte(h, ']'); end > 0 {
			h = h[1:end]
		}
	case strings.Count(h, ":") == 1:
		h = h[:strings.IndexByte(h, ':')]
	}
	return strings.TrimSuffix(h, ".")
}

// matchHostPattern: "*.example.com" matches exactly one extra label.
func matchHostPattern(pattern, host string) bool {
	if host == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*"); ok {
		label, found := strings.CutSuffix(host, rest)
		return found && label != "" && !strings.Contains(label, ".")
	}
	return pattern == host
}

// cleanRequestPath decodes and cleans a request path, refusing forms that
// upstream servers could read differently from us.
func cleanRequestPath(raw string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if strings.ContainsRune(raw, '\\') {
		return "", fmt.Errorf("backslash in path")
	}
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("bad percent-encoding")
	}
	if strings.ContainsRune(dec, '%') {
		return "", fmt.Errorf("nested percent-encoding")
	}
	for _, r := range dec {
		if r < ' ' || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("control character or backslash in path")
		}
	}
	if !strings.HasPrefix(dec, "/") {
		return "", fmt.Errorf("path not absolute")
	}
	clean := path.Clean(dec)
	for rest := clean; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if strings.HasPrefix(seg, "..") {
			return "", fmt.Errorf("dot-dot segment")
		}
	}
	return clean, nil
}

func anyPathMatch(patterns []string, p string) bool {
	for _, pat := range patterns {
		if matchPath(pat, p) {
			return true
		}
	}
	return false
}

// splitPath splits "/a/b" into ["a", "b"]; "/" into none.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// matchPath matches a cleaned path against a pattern. It walks both
// segment by segment rather than splitting them: it runs for every grant
// on every request.
func matchPath(pattern, p string) bool {
	pat := strings.Trim(pattern, "/")
	rest := strings.Trim(p, "/")
	for pat != "" {
		var ps string
		ps, pat, _ = strings.Cut(pat, "/")
		if ps == "**" && pat == "" {
			// A final "**" matches whatever remains, nothing included.
			return true
		}
		if rest == "" {
			return false
		}
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if !matchSegment(ps, seg) {
			return false
		}
	}
	return rest == ""
}

// matchSegment matches one segment where '*' stands for any run of
// characters; nothing else is special.
func matchSegment(pattern, s string) bool {
	// Iterative glob with single-star backtracking: linear in practice.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// lazyBody parses the request body once, on the first body constraint.
type lazyBody struct {
	raw         []byte
	contentType string
	parsed      bool
	fields      map[string][]string
	bad         map[string]bool // fields present with a non-scalar value
	err         string
}

// field returns the textual values of a top-level field. ok is false with
// a reason when the field is missing or unusable.
func (b *lazyBody) field(name string) (values []string, ok bool, why string) {
	if !b.parsed {
		b.parse()
	}
	if b.err != "" {
		return nil, false, b.err
	}
	if b.bad[name] {
		return nil, false, "not a string, number or boolean"
	}
	v, ok := b.fields[name]
	if !ok {
		return nil, false, "missing from body"
	}
	return v, true, ""
}

func (b *lazyBody) parse() {
	b.parsed = true
	if len(bytes.TrimSpace(b.raw)) == 0 {
		b.err = "missing from body (no body)"
		return
	}
	mt := ""
	if b.contentType != "" {
		var err error
		mt, _, err = mime.ParseMediaType(b.contentType)
		if err != nil {
			b.err = "unreadable content type"
			return
		}
	}
	switch {
	case mt == "application/x-www-form-urlencoded":
		q, err := url.ParseQuery(string(b.raw))
		if err != nil {
			b.err = "unreadable form body"
			return
		}
		b.fields = q
	case mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if err := b.parseJSON(); err != nil {
			b.err = "body is not a JSON object"
		}
	default:
		b.err = "body type not understood"
	}
}

// parseJSON reads the top level of a JSON object, keeping every occurrence
// of a duplicated key so a constraint sees all of them.
func (b *lazyBody) parseJSON() error {
	dec := json.NewDecoder(bytes.NewReader(b.raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not an object")
	}
	b.fields = make(map[string][]string)
	b.bad = make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("bad key")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) > 0 && raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			b.fields[key] = append(b.fields[key], s)
		case len(raw) > 0 && (raw[0] == '{' || raw[0] == '[' || raw[0] == 'n'):
			b.bad[key] = true
		default: // number, true, false: compared by their JSON text
			b.fields[key] = append(b.fields[key], string(raw))
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return fmt.Errorf("unterminated object")
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("trailing data")
	}
	return nil
}

package passport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"path"
	"strings"

	"github.com/stackctl/stack/hostmatch"
)

// Request is what Scope.Allows looks at: one HTTP request as the proxy sees
// it after MITM.
type Request struct {
	// Host is the request's host, with or without port; grants match it
	// as hostmatch does.
	Host string
	// Method is the HTTP method as sent (compared case-sensitively).
	Method string
	// Path is the URL path as sent (escaped form, without the query).
	// Allows matches it as each kind of upstream server could read it.
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
// nothing. A grant's path patterns must match the request path however an
// upstream server could read it: decoded once and cleaned, split where
// sent (so "%2F" and encoded dots stay inside their segment), and, when
// it holds an encoded '%', decoded twice. Paths no grant should see
// (invalid percent-encoding, backslashes, control characters, "..;"
// segments, encoding nested more than twice) are denied outright.
func (s Scope) Allows(r Request) Decision {
	rp, pathErr := cleanRequestPath(r.Path)
	body := lazyBody{raw: r.Body, contentType: r.ContentType}

	// The reason is formatted only for a denial: Allows runs on every
	// request, most of which are allowed.
	best, bestStage := Decision{Grant: -1}, stageHost
	for i := range s {
		stage, reason := s[i].check(r, &rp, pathErr, &body)
		if stage == stageAllowed {
			return Decision{Allowed: true, Grant: i}
		}
		if stage > bestStage {
			best, bestStage = Decision{Grant: i, Reason: reason}, stage
		}
	}
	if bestStage == stageHost {
		host, err := hostmatch.Normalize(r.Host)
		if err != nil {
			host = r.Host // a host no grant can name, shown as sent
		}
		best.Reason = "host not granted: " + host
	}
	return best
}

func (g *Grant) check(r Request, rp *requestPath, pathErr error, body *lazyBody) (int, string) {
	if !hostmatch.MatchAny(g.Hosts, r.Host) {
		return stageHost, ""
	}
	if len(g.Methods) > 0 && !contains(g.Methods, r.Method) {
		return stageMethod, fmt.Sprintf("method not granted: %s", r.Method)
	}
	if pathErr != nil {
		return stagePath, fmt.Sprintf("path refused: %v", pathErr)
	}
	if len(g.Paths) > 0 {
		for i, p := range rp.paths[:rp.n] {
			if !anyPathMatch(g.Paths, p) {
				return stagePath, fmt.Sprintf("path not granted: %s%s", p, rp.kinds[i].note())
			}
		}
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

// requestPath is a request path as the upstream servers behind the proxy
// could read it: the distinct readings, the canonical one (decoded once,
// then cleaned) first. Servers differ on whether "%2F" separates segments,
// whether encoded dots make dot segments, and whether a path is decoded
// once or (through a gateway that decodes and forwards) twice; a grant
// allows a path only if every reading matches, so none of these
// differences can lead out of a pattern.
type requestPath struct {
	n     int
	paths [3]string
	kinds [3]reading
}

type reading uint8

const (
	readDecoded reading = iota // decoded once, split on every '/', cleaned
	readAsSent                 // split where sent, segments decoded, literal dot segments resolved
	readTwice                  // decoded twice, split on every '/', cleaned
)

// note tells, in a denial's reason, which reading failed.
func (r reading) note() string {
	switch r {
	case readAsSent:
		return " (as sent: %2F and encoded dots kept inside their segment)"
	case readTwice:
		return " (decoded twice)"
	}
	return ""
}

func (rp *requestPath) add(p string, kind reading) {
	for _, have := range rp.paths[:rp.n] {
		if have == p {
			return
		}
	}
	rp.paths[rp.n], rp.kinds[rp.n] = p, kind
	rp.n++
}

// cleanRequestPath returns the readings of a request path (escaped form,
// as sent), refusing outright what no grant should see: invalid
// percent-encoding, control characters and backslashes (raw, or after one
// or two decodings), segments such as "..;" that some servers read as
// "..", and encoding nested more than twice. A literal '%' ("%25") is
// data like any other.
func cleanRequestPath(raw string) (requestPath, error) {
	var rp requestPath
	if raw == "" {
		rp.add("/", readDecoded)
		return rp, nil
	}
	if !strings.HasPrefix(raw, "/") {
		return rp, fmt.Errorf("path not absolute")
	}
	if strings.ContainsRune(raw, '\\') {
		return rp, fmt.Errorf("backslash in path")
	}
	if !strings.ContainsRune(raw, '%') {
		// Every reading is the same: the cleaned path as sent.
		if err := checkPathChars(raw, ""); err != nil {
			return rp, err
		}
		clean := path.Clean(raw)
		if err := checkDotDot(clean, ""); err != nil {
			return rp, err
		}
		rp.add(clean, readDecoded)
		return rp, nil
	}
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return rp, fmt.Errorf("bad percent-encoding")
	}
	if err := checkPathChars(dec, ""); err != nil {
		return rp, err
	}
	clean := path.Clean(dec)
	if err := checkDotDot(clean, ""); err != nil {
		return rp, err
	}
	rp.add(clean, readDecoded)
	rp.add(asSent(raw), readAsSent)
	if strings.ContainsRune(dec, '%') {
		twice := lenientUnescape(dec)
		if lenientUnescape(twice) != twice {
			return rp, fmt.Errorf("percent-encoding nested more than twice")
		}
		if err := checkPathChars(twice, " when decoded twice"); err != nil {
			return rp, err
		}
		clean := path.Clean(twice)
		if err := checkDotDot(clean, " when decoded twice"); err != nil {
			return rp, err
		}
		rp.add(clean, readTwice)
	}
	return rp, nil
}

func checkPathChars(p, when string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f || c == '\\' {
			return fmt.Errorf("control character or backslash in path%s", when)
		}
	}
	return nil
}

// checkDotDot refuses, in a cleaned path, a segment that begins with ".."
// without being "..": Tomcat reads "..;" as "..", and no legitimate
// client sends such names unencoded.
func checkDotDot(clean, when string) error {
	for rest := clean; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if strings.HasPrefix(seg, "..") {
			return fmt.Errorf("dot-dot segment%s", when)
		}
	}
	return nil
}

// asSent reads raw (valid percent-encoding) the way a server that splits
// before decoding does: literal dot segments are resolved, each segment is
// then decoded, and a decoded '/' or a segment of encoded dots stays data
// of its segment. They are written back encoded, which no pattern can
// match but a '*'.
func asSent(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i, seg := range strings.Split(raw, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if seg == "." || seg == ".." {
			b.WriteString(seg)
			continue
		}
		d, _ := url.PathUnescape(seg) // raw decoded whole, so seg does
		switch d {
		case ".":
			b.WriteString("%2E")
		case "..":
			b.WriteString("%2E%2E")
		default:
			b.WriteString(strings.ReplaceAll(d, "/", "%2F"))
		}
	}
	return path.Clean(b.String())
}

// lenientUnescape decodes every valid %XX of s and keeps any other '%' as
// it is, as a server decoding an already decoded path would.
func lenientUnescape(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
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

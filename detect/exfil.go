package detect

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/stackctl/stack/detect/internal/ahocorasick"
	"github.com/stackctl/stack/hostmatch"
)

// ExfiltrationName is the credential-exfiltration detector's config name.
const ExfiltrationName = "credential_exfiltration"

// PlaceholderPrefix starts every credential placeholder: stk_ph_<name>.
const PlaceholderPrefix = "stk_ph_"

// SecretMatcher finds the vault's own secrets in content. Match returns
// the names of the secrets present, none when there are none. It must
// neither change nor keep body: the detector reuses the buffer.
type SecretMatcher interface {
	Match(body []byte) (names []string)
}

// ExfiltrationOptions configure the credential_exfiltration detector.
// The zero value checks secret shapes only and treats every placeholder
// as one it cannot place.
type ExfiltrationOptions struct {
	// Bound returns the hosts a credential is bound to, as hostmatch
	// patterns ("api.stripe.com", or "*.example.com" for exactly one more
	// label: the rule the injector follows), ok false for a credential the
	// vault does not know. Nil: no binding is known.
	Bound func(name string) (hosts []string, ok bool)
	// Secrets finds the vault's own secrets in outbound content (see
	// NewSecretIndex). Nil: not checked.
	Secrets SecretMatcher
	// Window is the most bytes of a body looked at (default
	// DefaultScanWindow).
	Window int
	// AllowShapes maps a secret shape name (see SecretShapes) to hosts
	// (hostmatch patterns) it may be sent to, for the legitimate cases: a
	// JWT to the identity provider, a GitHub token to api.github.com.
	AllowShapes map[string][]string
}

// SecretShape is a kind of secret recognised by its format.
type SecretShape struct {
	Name     string
	Severity Severity
	// Prefix is the literal the secret starts with (or contains), shown
	// in evidence instead of the secret.
	Prefix string
	re     *regexp.Regexp
	// skip, when set, rejects a match (RE2 has no negative lookahead).
	skip func(m []byte) bool
	// need, when set, must appear within 4 KiB of the match (a service
	// account file names its type apart from its key).
	need string
	// span is how far from the trigger the expression may reach.
	span int
	// anchored is re anchored at its trigger; wordStart is set when re
	// begins with \b (see findShapes).
	anchored  *regexp.Regexp
	wordStart bool
}

var secretShapes = []*SecretShape{
	{Name: "aws_access_key_id", Severity: Critical, Prefix: "AKIA", re: regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), skip: awsExample("EXAMPLE"), span: 24},
	{Name: "aws_secret_access_key", Severity: Critical, Prefix: "aws_secret_access_key", re: regexp.MustCompile(`(?i)(?:aws_?secret_?access_?key|secretaccesskey)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}\b`), skip: awsExample("EXAMPLEKEY"), span: 120},
	{Name: "gcp_service_account_key", Severity: Critical, Prefix: `"private_key"`, re: regexp.MustCompile(`"private_key"\s*:\s*"-----BEGIN [A-Z ]*PRIVATE KEY-----`), need: `"service_account"`, span: 96},
	{Name: "stripe_live_key", Severity: Critical, Prefix: "sk_live_", re: regexp.MustCompile(`\b(?:sk|rk)_live_[0-9A-Za-z]{16,}\b`), span: 160},
	{Name: "stripe_test_key", Severity: Warning, Prefix: "sk_test_", re: regexp.MustCompile(`\b(?:sk|rk)_test_[0-9A-Za-z]{16,}\b`), span: 160},
	{Name: "github_token", Severity: Critical, Prefix: "ghp_", re: regexp.MustCompile(`\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}\b`), span: 128},
	{Name: "slack_token", Severity: Critical, Prefix: "xox", re: regexp.MustCompile(`\bxox[abpr]-[A-Za-z0-9-]{10,}`), span: 128},
	{Name: "anthropic_key", Severity: Critical, Prefix: "sk-ant-", re: regexp.MustCompile(`\bsk-ant-[A-Za-z0-9_-]{20,}`), span: 160},
	{Name: "openai_key", Severity: Critical, Prefix: "sk-", re: regexp.MustCompile(`\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}`), skip: func(m []byte) bool { return strings.HasPrefix(string(m), "sk-ant-") }, span: 200},
	{Name: "private_key_pem", Severity: Critical, Prefix: "-----BEGIN", re: regexp.MustCompile(`-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----`), span: 48},
	{Name: "jwt", Severity: Warning, Prefix: "eyJ", re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`), span: 4096},
	{Name: "placeholder", Severity: Critical, Prefix: PlaceholderPrefix, re: regexp.MustCompile(`stk_ph_[A-Za-z0-9][A-Za-z0-9_.-]*`), span: 128},
}

// awsExample returns the skip of an AWS shape: AWS's documentation writes
// its example keys with a suffix a real key almost never has
// (AKIAIOSFODNN7EXAMPLE, wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY: one in
// 32^7 of real key ids ends in EXAMPLE). They are in every tutorial, SDK
// test and README an agent reads or sends, and grant nothing.
func awsExample(suffix string) func(m []byte) bool {
	return func(m []byte) bool { return bytes.HasSuffix(m, []byte(suffix)) }
}

// exfilTriggers are the literals the shapes are found by, case-sensitive.
var exfilTriggers = []struct {
	lit   string
	shape int
}{
	{"AKIA", 0}, {"ASIA", 0}, {"aws_secret_access_key", 1}, {"AWS_SECRET_ACCESS_KEY", 1}, {"SecretAccessKey", 1},
	{"aws_secret_key", 1}, {`"private_key"`, 2}, {"sk_live_", 3}, {"rk_live_", 3}, {"sk_test_", 4}, {"rk_test_", 4},
	{"ghp_", 5}, {"gho_", 5}, {"ghu_", 5}, {"ghs_", 5}, {"ghr_", 5}, {"github_pat_", 5},
	{"xoxa-", 6}, {"xoxb-", 6}, {"xoxp-", 6}, {"xoxr-", 6}, {"sk-ant-", 7}, {"sk-", 8},
	{"-----BEGIN", 9}, {"eyJ", 10}, {PlaceholderPrefix, 11},
}

var exfilAC = func() *ahocorasick.Matcher {
	anchorShapes()
	words := make([]string, len(exfilTriggers))
	for i, t := range exfilTriggers {
		words[i] = t.lit
	}
	return ahocorasick.New(words, nil)
}()

// SecretShapes lists the names of the secret formats recognised.
func SecretShapes() []string {
	out := make([]string, 0, len(secretShapes)-1)
	for _, s := range secretShapes[:len(secretShapes)-1] {
		out = append(out, s.Name)
	}
	return out
}

// shapeHit is one secret-shaped string found in content.
type shapeHit struct {
	shape      *SecretShape
	start, end int
	text       string // the match itself: never put in evidence
	// enc names the encoding the secret was found under ("base64",
	// "hex", "percent"), empty when it was in the clear; start and end
	// then cover the whole encoded run.
	enc string
}

// findShapes finds secret-shaped strings and placeholders in b.
//
// Every shape but aws_secret_access_key begins where its trigger begins,
// so its expression runs anchored there (its leading \b checked by hand),
// which reads only as far as the match goes; aws_secret_access_key may
// begin before its trigger and is searched in a window around it.
// Shapes whose bit (1 << index in secretShapes) is set in skip are not
// looked for.
func findShapes(b []byte, skip uint32) []shapeHit {
	var out []shapeHit
	var last [16]int // per shape: where the last match or window ended
	exfilAC.Scan(b, func(w, end int) {
		t := exfilTriggers[w]
		sh := secretShapes[t.shape]
		start := end - len(t.lit)
		if start < last[t.shape] || skip&(1<<t.shape) != 0 {
			return
		}
		add := func(s, e int) {
			m := b[s:e]
			if sh.skip != nil && sh.skip(m) {
				return
			}
			if sh.need != "" && !bytes.Contains(b[max(0, s-4096):min(len(b), e+4096)], []byte(sh.need)) {
				return
			}
			if n := len(out); n > 0 && out[n-1].shape == sh && out[n-1].start == s {
				return
			}
			out = append(out, shapeHit{shape: sh, start: s, end: e, text: string(m)})
		}
		if sh.anchored == nil {
			lo, hi := max(0, start-sh.span), min(len(b), start+sh.span)
			last[t.shape] = hi
			for _, loc := range sh.re.FindAllIndex(b[lo:hi], -1) {
				add(lo+loc[0], lo+loc[1])
			}
			return
		}
		if sh.wordStart && start > 0 && isWordByte(b[start-1]) && !afterEscape(b, start) {
			return
		}
		loc := sh.anchored.FindIndex(b[start:min(len(b), start+sh.span)])
		if loc == nil {
			return
		}
		last[t.shape] = start + loc[1]
		add(start, start+loc[1])
	})
	return out
}

// afterEscape reports whether b[:i] ends with a JSON or C string escape
// that stands for a character of its own: a secret right after a \n in a
// chat message's JSON ("key:\nAKIA…") starts a word as the model reads
// it. The backslash must not be escaped itself ("\\n" is a backslash
// and an n).
func afterEscape(b []byte, i int) bool {
	k := i - 1
	switch b[k] {
	case 'n', 't', 'r', 'b', 'f':
	default:
		// \uXXXX
		if i < 6 || b[i-5] != 'u' {
			return false
		}
		for _, c := range b[i-4 : i] {
			if !isHexByte(c) {
				return false
			}
		}
		k = i - 5
	}
	n := 0
	for k-1-n >= 0 && b[k-1-n] == '\\' {
		n++
	}
	return n%2 == 1
}

func isHexByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Encoded secrets. A secret sent base64-encoded (a config file, a Basic
// credential), as hex or percent-encoded (a form value, "%2F" in a secret
// access key) has no shape until decoded: runs of those encodings long
// enough to hold the shortest shape are decoded and searched too.
const (
	// minEncodedRun is the shortest base64 run decoded: 20 bytes hold 15,
	// the shortest secret shape.
	minEncodedRun = 20
	// minHexRun is the shortest hex run decoded.
	minHexRun = 32
)

// b64Byte reports a byte of the base64 or base64url alphabet.
func b64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// encodedShapes finds secret shapes in the base64, hex and percent-encoded
// runs of b (placeholders excepted: the injector reads only those in the
// clear). Shapes whose bit is set in skip are not looked for.
func encodedShapes(b []byte, skip uint32) []shapeHit {
	skip |= placeholderBit
	var out []shapeHit
	bp := decodeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	used := 0 // the most of buf any decoding wrote
	defer func() {
		// Decoded secrets do not stay behind in the pool.
		clear(buf[:used])
		if cap(buf) <= maxPooledURL {
			*bp = buf[:0]
			decodeBufs.Put(bp)
		}
	}()
	// A run of minEncodedRun bytes or more covers one of every
	// minEncodedRun consecutive positions: only those are looked at, and
	// the run around them where they are of the alphabet, so prose is
	// read a few bytes in twenty.
	lo := 0 // no run starts before lo
	for p := minEncodedRun - 1; p < len(b); p += minEncodedRun {
		if !b64Byte(b[p]) {
			lo = p + 1
			continue
		}
		i := p
		for i > lo && b64Byte(b[i-1]) {
			i--
		}
		j := p + 1
		for j < len(b) && b64Byte(b[j]) {
			j++
		}
		lo, p = j+1, j
		hex := true
		for _, c := range b[i:j] {
			hex = hex && isHexByte(c)
		}
		switch {
		case hex && j-i >= minHexRun:
			for s := i; s <= i+1; s++ {
				buf = unhexBytes(buf[:0], b[s:j])
				used = max(used, len(buf))
				out = addEncoded(out, buf, skip, "hex", i, j)
			}
		case !hex && j-i >= minEncodedRun:
			run := b[i:j]
			enc := base64.RawStdEncoding
			if bytes.ContainsAny(run, "-_") {
				enc = base64.RawURLEncoding
			}
			if len(run)%4 == 1 {
				run = run[:len(run)-1]
			}
			buf = slices.Grow(buf[:0], enc.DecodedLen(len(run)))[:enc.DecodedLen(len(run))]
			used = max(used, len(buf))
			if n, err := enc.Decode(buf, run); err == nil {
				out = addEncoded(out, buf[:n], skip, "base64", i, j)
			}
		}
	}
	for i := 0; ; {
		k := bytes.IndexByte(b[i:], '%')
		if k < 0 {
			break
		}
		k += i
		if k+2 >= len(b) || !isHexByte(b[k+1]) || !isHexByte(b[k+2]) {
			i = k + 1
			continue
		}
		// The token around the escape: up to white space, a quote or a
		// form field's end.
		s, e := k, k
		for s > 0 && percentToken(b[s-1]) {
			s--
		}
		for e < len(b) && percentToken(b[e]) {
			e++
		}
		buf = unpercent(buf[:0], b[s:e])
		used = max(used, len(buf))
		out = addEncoded(out, buf, skip, "percent", s, e)
		i = e
	}
	return out
}

// decodeBufs holds the buffers encoded runs are decoded into.
var decodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// addEncoded appends to out the shapes found in dec, decoded with enc
// from b[s:e].
func addEncoded(out []shapeHit, dec []byte, skip uint32, enc string, s, e int) []shapeHit {
	for _, h := range findShapes(dec, skip) {
		h.start, h.end, h.enc = s, e, enc
		out = append(out, h)
	}
	return out
}

// percentToken reports a byte of a percent-encoded token.
func percentToken(c byte) bool {
	return c > ' ' && c < 0x7F && c != '"' && c != '\'' && c != '&' && c != '<' && c != '>'
}

// unhexBytes appends the bytes the hex digit pairs of run stand for (a
// trailing odd digit is dropped) to dst.
func unhexBytes(dst, run []byte) []byte {
	for k := 0; k+1 < len(run); k += 2 {
		h, _ := strconv.ParseUint(string(run[k:k+2]), 16, 8)
		dst = append(dst, byte(h))
	}
	return dst
}

// unpercent appends token with its %XX escapes decoded to dst.
func unpercent(dst, token []byte) []byte {
	for k := 0; k < len(token); k++ {
		if token[k] == '%' && k+2 < len(token) && isHexByte(token[k+1]) && isHexByte(token[k+2]) {
			h, _ := strconv.ParseUint(string(token[k+1:k+3]), 16, 8)
			dst = append(dst, byte(h))
			k += 2
			continue
		}
		dst = append(dst, token[k])
	}
	return dst
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// anchorShapes compiles, for the shapes whose match begins at their
// trigger, the expression anchored at the start (without its leading \b,
// which findShapes checks against the byte before).
func anchorShapes() {
	for i, sh := range secretShapes {
		if i == 1 { // aws_secret_access_key: may begin before its trigger
			continue
		}
		expr := sh.re.String()
		// Each alternative of an expression that begins with \b does.
		if strings.HasPrefix(expr, `\b`) {
			sh.wordStart = true
		}
		sh.anchored = regexp.MustCompile(`^(?:` + expr + `)`)
	}
}

// redacted describes a secret without revealing it: its known prefix
// and length.
func redacted(h shapeHit) string {
	p := h.shape.Prefix
	if !strings.HasPrefix(h.text, p) {
		p = ""
		if h.shape.Name == "aws_access_key_id" {
			p = h.text[:4]
		}
	}
	if h.shape.Name == "placeholder" || h.shape.Name == "private_key_pem" {
		return h.text
	}
	return fmt.Sprintf("%s... (%d chars)", p, len(h.text))
}

// redactSecrets replaces secret-shaped strings in s by their redacted
// form, for excerpts quoted in evidence.
func redactSecrets(s string) string {
	hs := findShapes([]byte(s), 0)
	if len(hs) == 0 {
		return s
	}
	var b strings.Builder
	at := 0
	for _, h := range hs {
		if h.shape.Name == "placeholder" || h.start < at {
			continue
		}
		b.WriteString(s[at:h.start])
		b.WriteString("[" + h.shape.Name + " redacted]")
		at = h.end
	}
	b.WriteString(s[at:])
	return b.String()
}

// Exfiltration is the credential_exfiltration detector. It looks at
// outbound requests only (the URL, the headers and the body window) for
// placeholders headed to hosts their credential is not bound to,
// secret-shaped strings headed anywhere, and the vault's own secrets.
// Headers are not searched for JWTs, bearer tokens that travel in headers
// by design, nor for placeholders, which the event lists (Placeholders).
type Exfiltration struct {
	opts ExfiltrationOptions
}

// NewExfiltration returns the detector. A negative window is an error
// wrapping ErrInvalidOptions.
func NewExfiltration(opts ExfiltrationOptions) (*Exfiltration, error) {
	if opts.Window < 0 {
		return nil, fmt.Errorf("exfiltration options: %w: negative window", ErrInvalidOptions)
	}
	if opts.Window == 0 {
		opts.Window = DefaultScanWindow
	}
	for shape, hosts := range opts.AllowShapes {
		for _, h := range hosts {
			if _, err := hostmatch.Pattern(h); err != nil {
				return nil, fmt.Errorf("exfiltration options: %w: allow_shapes %s host %q: %v", ErrInvalidOptions, shape, h, err)
			}
		}
	}
	return &Exfiltration{opts: opts}, nil
}

// Name returns "credential_exfiltration".
func (x *Exfiltration) Name() string { return ExfiltrationName }

// Inspect returns one signal per finding; responses are not inspected.
func (x *Exfiltration) Inspect(ev *Event) []Signal {
	if ev.Direction != Request {
		return nil
	}
	body := ev.Body
	if len(body) > x.opts.Window {
		body = body[:x.opts.Window]
	}
	// The URL and the headers as bytes, in a pooled buffer: the
	// matchers keep nothing of it, and a request without findings then
	// allocates nothing.
	ub := urlBufs.Get().(*[]byte)
	buf := appendRequestURL((*ub)[:0], ev)
	nURL := len(buf)
	buf = appendHeaders(buf, ev.Headers)
	*ub = buf
	defer func() {
		// A URL or a header can carry a secret: none stays behind in the
		// pool.
		clear(buf)
		if cap(buf) <= maxPooledURL {
			urlBufs.Put(ub)
		}
	}()
	url, hdrs := buf[:nURL], buf[nURL:]

	var sigs []Signal
	// Placeholder names already reported; a request names one or two.
	var seenBuf [8]string
	seenPH := seenBuf[:0]
	for _, name := range ev.Placeholders {
		if contains(seenPH, name) {
			continue
		}
		seenPH = append(seenPH, name)
		if s, ok := x.placeholderSignal(name, ev.Host, "", nil); ok {
			sigs = append(sigs, s)
		}
	}
	var seenShape map[string]bool
	var awsIDs *[2]string // what AWS signatures name, once looked for
	for _, part := range [...]struct {
		where string
		b     []byte
		skip  uint32
	}{{"URL", url, 0}, {"header", hdrs, headerSkips}, {"body", body, 0}} {
		if len(part.b) == 0 {
			continue
		}
		hits := findShapes(part.b, part.skip)
		hits = append(hits, encodedShapes(part.b, part.skip)...)
		for _, h := range hits {
			var span *Span
			where := part.where
			switch part.where {
			case "body":
				span = &Span{Start: h.start, End: h.end, Excerpt: redacted(h)}
			case "header":
				where = headerAt(ev.Headers, hdrs, h.start)
			}
			at := "in the request " + where
			if h.enc != "" {
				at = h.enc + "-encoded " + at
			}
			if h.shape.Name == "placeholder" {
				name := strings.TrimPrefix(h.text, PlaceholderPrefix)
				if contains(seenPH, name) {
					continue
				}
				seenPH = append(seenPH, name)
				if s, ok := x.placeholderSignal(name, ev.Host, where, span); ok {
					sigs = append(sigs, s)
				}
				continue
			}
			if hostmatch.MatchAny(x.opts.AllowShapes[h.shape.Name], ev.Host) || seenShape[h.text] {
				continue
			}
			if h.shape.Name == "aws_access_key_id" && part.where != "body" && h.enc == "" {
				// The key id an AWS signature names, on its way to AWS.
				if awsIDs == nil {
					ids := awsSignedKeyIDs(ev)
					awsIDs = &ids
				}
				if h.text == awsIDs[0] || h.text == awsIDs[1] {
					continue
				}
			}
			if seenShape == nil {
				seenShape = map[string]bool{}
			}
			seenShape[h.text] = true
			sigs = append(sigs, Signal{
				Detector: ExfiltrationName, Severity: h.shape.Severity, Score: 1, Rule: h.shape.Name, Span: span,
				Evidence: fmt.Sprintf("%s-shaped string %s %s to %s", h.shape.Name, redacted(h), at, hostOrUnknown(ev.Host)),
			})
		}
	}
	if x.opts.Secrets != nil {
		// Empty content holds no secret: the matcher is not asked.
		var found [3][]string // URL, headers, body
		for i, b := range [...][]byte{url, hdrs, body} {
			if len(b) > 0 {
				found[i] = x.opts.Secrets.Match(b)
			}
		}
		if len(found[0])+len(found[1])+len(found[2]) > 0 {
			sigs = x.secretSignals(sigs, ev.Host, found)
		}
	}
	return sigs
}

// headerSkips are the shapes not looked for in request headers: JWTs,
// bearer tokens that travel in headers by design, and placeholders, which
// the proxy finds in headers itself and lists in Event.Placeholders.
// placeholderBit is the placeholder shape's bit, for skip masks.
var placeholderBit = func() uint32 {
	for i, sh := range secretShapes {
		if sh.Name == "placeholder" {
			return 1 << i
		}
	}
	panic("detect: no placeholder shape")
}()

var headerSkips = func() (m uint32) {
	for i, sh := range secretShapes {
		if sh.Name == "jwt" || sh.Name == "placeholder" {
			m |= 1 << i
		}
	}
	return m
}()

// urlBufs holds buffers for the URL of a request being inspected; those
// grown past maxPooledURL bytes are left to the collector.
var urlBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledURL = 16 << 10

// secretSignals appends a signal for each vault secret found in the URL,
// the headers or the body of a request (found, in that order) to host a
// secret is not bound to, by name; one found in several is reported in
// the last of them.
func (x *Exfiltration) secretSignals(sigs []Signal, host string, found [3][]string) []Signal {
	names := map[string]string{}
	for i, where := range [...]string{"URL", "headers", "body"} {
		for _, n := range found[i] {
			names[n] = where
		}
	}
	keys := make([]string, 0, len(names))
	for n := range names {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	for _, n := range keys {
		if x.opts.Bound != nil {
			if hosts, ok := x.opts.Bound(n); ok && hostmatch.MatchAny(hosts, host) {
				continue // the credential on its way to its own host
			}
		}
		sigs = append(sigs, Signal{
			Detector: ExfiltrationName, Severity: Critical, Score: 1, Rule: "vault_secret",
			Evidence: fmt.Sprintf("the secret of vault credential %q appears in the request %s to %s, a host it is not bound to", n, names[n], hostOrUnknown(host)),
		})
	}
	return sigs
}

// inRequest says where in the request something was found; where is empty
// when the request as a whole is meant.
func inRequest(where string) string {
	if where == "" {
		return "in the request"
	}
	return "in the request " + where
}

func (x *Exfiltration) placeholderSignal(name, host, where string, span *Span) (Signal, bool) {
	s := Signal{Detector: ExfiltrationName, Score: 1, Span: span}
	if x.opts.Bound == nil {
		s.Severity, s.Rule = Warning, "placeholder_unknown"
		s.Evidence = fmt.Sprintf("placeholder %s%s %s to %s; its binding is not known here", PlaceholderPrefix, name, inRequest(where), hostOrUnknown(host))
		return s, true
	}
	hosts, ok := x.opts.Bound(name)
	if !ok {
		s.Severity, s.Rule = Warning, "placeholder_unknown"
		s.Evidence = fmt.Sprintf("placeholder %s%s %s to %s names no vault credential", PlaceholderPrefix, name, inRequest(where), hostOrUnknown(host))
		return s, true
	}
	if hostmatch.MatchAny(hosts, host) {
		return s, false
	}
	s.Severity, s.Rule = Critical, "placeholder_unbound"
	s.Evidence = fmt.Sprintf("placeholder %s%s %s headed to %s; the credential is bound to %s", PlaceholderPrefix, name, inRequest(where), hostOrUnknown(host), strings.Join(hosts, ", "))
	return s, true
}

func hostOrUnknown(h string) string {
	if h == "" {
		return "an unknown host"
	}
	return h
}

// asciiEqualFold reports whether ASCII strings a and b, of the same
// length, are equal lower-cased.
func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

// appendRequestURL appends the path and the decoded query of ev to b,
// for matching.
func appendRequestURL(b []byte, ev *Event) []byte {
	b = append(b, ev.Path...)
	for k, vs := range ev.Query {
		for _, v := range vs {
			b = append(b, ' ')
			b = append(b, k...)
			b = append(b, '=')
			b = append(b, v...)
		}
	}
	return b
}

// appendHeaders appends each header value of h to b, one a line, for
// matching; the proxy's own Proxy-Authorization is left out. Header names
// are not matched: they are the same on every request.
func appendHeaders(b []byte, h http.Header) []byte {
	for k, vs := range h {
		if len(k) == len(proxyAuthorization) && asciiEqualFold(k, proxyAuthorization) {
			continue
		}
		for _, v := range vs {
			b = append(b, v...)
			b = append(b, '\n')
		}
	}
	return b
}

// headerAt names, for evidence, the header of h whose value is the line
// of lines (as appendHeaders wrote them) that holds offset i.
func headerAt(h http.Header, lines []byte, i int) string {
	start := bytes.LastIndexByte(lines[:i], '\n') + 1
	line, _, _ := bytes.Cut(lines[start:], []byte{'\n'})
	for k, vs := range h {
		for _, v := range vs {
			if v == string(line) && !(len(k) == len(proxyAuthorization) && asciiEqualFold(k, proxyAuthorization)) {
				return "header " + k
			}
		}
	}
	return "headers"
}

const proxyAuthorization = "Proxy-Authorization"

// SecretIndex finds the vault's own secrets in content without keeping
// them: it holds, per secret, a keyed hash (HMAC-SHA-256 under a random
// per-index key), its length and, for secrets of 16 bytes or more, its
// first four bytes.
//
// Content is split into tokens: runs of the base64 and URL-safe alphabet
// [A-Za-z0-9+/_.~-] with at most two '=' of padding. A token whose length
// is that of a secret (and whose first bytes match its prefix) is hashed
// and compared. This finds API keys, tokens and keys wherever they stand
// as a whole token (header values, JSON strings, form and query values)
// at the cost of one pass over the content, and hashes almost nothing.
//
// Trade-offs: a secret glued into a longer token, split, encoded, or
// containing characters outside that alphabet (a password with spaces or
// punctuation) is not found; secrets shorter than 8 bytes are ignored, as
// they would match ordinary words. The prefix narrows candidates cheaply
// but reveals four bytes of a long secret to whoever can read the
// process memory; keyed hashes of low-entropy secrets remain guessable
// by someone who also has the key. Neither is worse than the sidecar
// holding the decrypted credentials it injects.
type SecretIndex struct {
	key     []byte
	byLen   map[int][]indexEntry
	maxLen  int
	lengths [256]bool // lengths below 256 present, for a fast check
}

type indexEntry struct {
	name   string
	prefix string
	mac    []byte
}

// minSecretLen is the shortest secret SecretIndex indexes.
const minSecretLen = 8

// NewSecretIndex indexes secrets by name. It does not retain the map or
// the secret bytes; callers should clear their copies once it returns.
func NewSecretIndex(secrets map[string][]byte) *SecretIndex {
	idx := &SecretIndex{key: make([]byte, 32), byLen: map[int][]indexEntry{}}
	if _, err := rand.Read(idx.key); err != nil {
		panic("detect: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	for name, s := range secrets {
		if len(s) < minSecretLen {
			continue
		}
		e := indexEntry{name: name, mac: idx.mac(s)}
		if len(s) >= 16 {
			e.prefix = string(s[:4])
		}
		idx.byLen[len(s)] = append(idx.byLen[len(s)], e)
		if len(s) < len(idx.lengths) {
			idx.lengths[len(s)] = true
		}
		idx.maxLen = max(idx.maxLen, len(s))
	}
	return idx
}

func (idx *SecretIndex) mac(b []byte) []byte {
	m := hmac.New(sha256.New, idx.key)
	m.Write(b)
	return m.Sum(nil)
}

func isTokenByte(c byte) bool { return tokenBytes[c] }

var tokenBytes = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '_' || b == '.' || b == '~' || b == '-'
	}
	return t
}()

// Match returns the names of the indexed secrets that appear in body as a
// whole token, sorted.
func (idx *SecretIndex) Match(body []byte) []string {
	if idx == nil || len(idx.byLen) == 0 {
		return nil
	}
	found := map[string]bool{}
	for i := 0; i < len(body); {
		if !isTokenByte(body[i]) {
			i++
			continue
		}
		j := i
		for j < len(body) && isTokenByte(body[j]) {
			j++
		}
		end := j
		for end < len(body) && end-j < 2 && body[end] == '=' {
			end++
		}
		// With and without the padding: a secret may end in '=' or sit
		// before "=" in a key=value pair.
		idx.check(body[i:j], found)
		if end > j {
			idx.check(body[i:end], found)
		}
		i = end
		if i == j {
			i = j + 1
		}
	}
	if len(found) == 0 {
		return nil
	}
	out := make([]string, 0, len(found))
	for n := range found {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (idx *SecretIndex) check(tok []byte, found map[string]bool) {
	n := len(tok)
	if n < minSecretLen || n > idx.maxLen || n < len(idx.lengths) && !idx.lengths[n] {
		return
	}
	es := idx.byLen[n]
	var mac []byte
	for _, e := range es {
		if e.prefix != "" && string(tok[:4]) != e.prefix {
			continue
		}
		if mac == nil {
			mac = idx.mac(tok)
		}
		if hmac.Equal(mac, e.mac) {
			found[e.name] = true
		}
	}
}

// String describes the index without revealing anything about secrets
// beyond their count.
func (idx *SecretIndex) String() string {
	n := 0
	for _, es := range idx.byLen {
		n += len(es)
	}
	return "SecretIndex(" + strconv.Itoa(n) + " secrets)"
}

// lowerByte lower-cases an ASCII letter and returns any other byte as it
// is.
func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

package passport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/stackctl/stack/hostmatch"
)

// Scope is the list of grants a passport carries. A request is allowed when
// at least one grant allows it; an empty scope allows nothing.
type Scope []Grant

// Grant allows requests to a set of hosts, with optional limits on methods,
// paths, credentials and request parameters; or, as a handoff grant,
// handoffs to other agents. Empty Methods, Paths or
// Credentials mean "none" for credentials and "any" for methods and paths.
type Grant struct {
	// Hosts are host patterns as hostmatch reads them: exact hosts
	// ("api.stripe.com", an IP address) or one-label wildcards
	// ("*.example.com" matches "a.example.com", not "example.com" nor
	// "a.b.example.com"), on any port. Required.
	Hosts []string `json:"hosts" yaml:"hosts" mapstructure:"hosts"`
	// Methods are upper-case HTTP methods; empty means any method.
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty" mapstructure:"methods"`
	// Paths are URL path patterns: "*" matches within one segment, a final
	// "/**" matches any remainder (including nothing). Empty means any path.
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty" mapstructure:"paths"`
	// Credentials are vault credential names this grant lets the proxy inject.
	Credentials []string `json:"credentials,omitempty" yaml:"credentials,omitempty" mapstructure:"credentials"`
	// Params constrain query parameters or top-level JSON body fields; all
	// must hold.
	Params []ParamConstraint `json:"params,omitempty" yaml:"params,omitempty" mapstructure:"params"`
	// Narrow limits the minted credentials this grant names (their OAuth2
	// scopes, GitHub permissions, AWS actions); nil leaves each at its
	// vault entry's limit.
	Narrow *Narrowing `json:"narrow,omitempty" yaml:"narrow,omitempty" mapstructure:"narrow"`
	// Handoff makes this a handoff grant (see HandoffGrant): it names
	// whom the agent may hand off to, and which schemas, and nothing
	// else.
	Handoff *HandoffGrant `json:"handoff,omitempty" yaml:"handoff,omitempty" mapstructure:"handoff"`
}

// ParamConstraint constrains one request parameter.
type ParamConstraint struct {
	// Name of the query parameter or top-level JSON body field.
	Name string `json:"name" yaml:"name" mapstructure:"name"`
	// From is "query" or "body".
	From string `json:"from" yaml:"from" mapstructure:"from"`
	// Op is one of "eq", "in", "prefix", "regex".
	Op string `json:"op" yaml:"op" mapstructure:"op"`
	// Value is the operand of eq, prefix and regex.
	Value string `json:"value,omitempty" yaml:"value,omitempty" mapstructure:"value"`
	// Values is the operand of in.
	Values []string `json:"values,omitempty" yaml:"values,omitempty" mapstructure:"values"`
}

// Operators and sources of a ParamConstraint.
const (
	OpEq     = "eq"
	OpIn     = "in"
	OpPrefix = "prefix"
	OpRegex  = "regex"

	FromQuery = "query"
	FromBody  = "body"
)

// Limits that keep scopes small enough to travel in a token and cheap to
// evaluate on every request.
const (
	// MaxScopeSize bounds the input of ParseScope.
	MaxScopeSize = 256 << 10
	// MaxRegexLen bounds a regex constraint's source.
	MaxRegexLen = 1024
)

// ParseScope reads a scope written as YAML or JSON: a list of grants.
// Unknown keys are errors. The result is validated; invalid scopes come
// back with every problem listed and ErrInvalidScope.
func ParseScope(b []byte) (Scope, error) {
	if len(b) > MaxScopeSize {
		return nil, fmt.Errorf("parse scope: %d bytes, limit %d: %w", len(b), MaxScopeSize, ErrInvalidScope)
	}
	var s Scope
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("parse scope: empty input: %w", ErrInvalidScope)
	}
	if trimmed[0] == '[' || trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("parse scope: json: %v: %w", err, ErrInvalidScope)
		}
		if dec.More() {
			return nil, fmt.Errorf("parse scope: json: trailing data: %w", ErrInvalidScope)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(trimmed))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("parse scope: yaml: %v: %w", err, ErrInvalidScope)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("parse scope: %w", err)
	}
	return s, nil
}

// Validate reports every problem of the scope at once, each naming the
// grant and field, joined and wrapped with ErrInvalidScope. It compiles
// regex constraints (into a shared cache), so Allows never compiles on the
// request path for a validated scope. It changes nothing in s.
func (s Scope) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if len(s) == 0 {
		add("scope has no grants (it would allow nothing)")
	}
	for i, g := range s {
		at := fmt.Sprintf("grant[%d]", i)
		if g.Handoff != nil {
			for _, err := range g.handoffProblems() {
				add("%s.%v", at, err)
			}
			continue
		}
		if len(g.Hosts) == 0 {
			add("%s.hosts: at least one host is required", at)
		}
		for j, h := range g.Hosts {
			if _, err := hostmatch.Pattern(h); err != nil {
				add("%s.hosts[%d] %q: %v", at, j, h, err)
			}
		}
		for j, m := range g.Methods {
			if !validMethod(m) {
				add("%s.methods[%d] %q: want an upper-case HTTP method such as GET", at, j, m)
			}
		}
		for j, p := range g.Paths {
			if err := validatePathPattern(p); err != nil {
				add("%s.paths[%d] %q: %v", at, j, p, err)
			}
		}
		for j, c := range g.Credentials {
			if !validName(c) {
				add("%s.credentials[%d] %q: want letters, digits, '-', '_' or '.'", at, j, c)
			}
		}
		for j, pc := range g.Params {
			for _, err := range pc.problems() {
				add("%s.params[%d] (%s): %v", at, j, pc.Name, err)
			}
		}
		if !g.Narrow.empty() {
			if len(g.Credentials) == 0 {
				add("%s.narrow: the grant names no credentials to narrow", at)
			}
			for _, err := range g.Narrow.problems() {
				add("%s.narrow.%v", at, err)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidScope, errors.Join(errs...))
}

func (pc ParamConstraint) problems() []error {
	var errs []error
	if !validName(pc.Name) {
		errs = append(errs, fmt.Errorf("name %q: want letters, digits, '-', '_' or '.'", pc.Name))
	}
	if pc.From != FromQuery && pc.From != FromBody {
		errs = append(errs, fmt.Errorf("from %q: want %q or %q", pc.From, FromQuery, FromBody))
	}
	switch pc.Op {
	case OpEq, OpPrefix, OpRegex:
		if len(pc.Values) > 0 {
			errs = append(errs, fmt.Errorf("op %s takes value, not values", pc.Op))
		}
		if pc.Op == OpPrefix && pc.Value == "" {
			errs = append(errs, errors.New("prefix needs a non-empty value"))
		}
		if pc.Op == OpRegex {
			if pc.Value == "" {
				errs = append(errs, errors.New("regex needs a non-empty value"))
			} else if _, err := compileParamRegex(pc.Value); err != nil {
				errs = append(errs, err)
			}
		}
	case OpIn:
		if pc.Value != "" {
			errs = append(errs, errors.New("op in takes values, not value"))
		}
		if len(pc.Values) == 0 {
			errs = append(errs, errors.New("op in needs at least one value"))
		}
	default:
		errs = append(errs, fmt.Errorf("op %q: want eq, in, prefix or regex", pc.Op))
	}
	return errs
}

func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// validatePathPattern accepts "/"-rooted patterns of non-empty segments,
// where "*" globs within a segment and a final "**" segment matches any
// remainder. Patterns are compared against cleaned, decoded paths, so dot
// segments and trailing slashes could never match and are refused; so is
// '%', which would leave a reader guessing whether a pattern names the
// encoded or the decoded form ("*" matches a literal '%').
func validatePathPattern(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("must start with /")
	}
	if p == "/" {
		return nil
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "":
			return errors.New("empty segment (double or trailing slash)")
		case seg == "." || seg == "..":
			return errors.New("dot segments are not allowed")
		case seg == "**":
			if i != len(segs)-1 {
				return errors.New("\"**\" is allowed only as the final segment")
			}
		case strings.Contains(seg, "**"):
			return errors.New("\"**\" must be a whole segment")
		}
		for _, r := range seg {
			if r <= ' ' || r == 0x7f || strings.ContainsRune("%?#\\", r) {
				return fmt.Errorf("character %q not allowed in a path pattern", r)
			}
		}
	}
	return nil
}

// regexCache holds compiled param regexes by source so a validated scope's
// regexes are compiled once per process, whichever Scope value carries
// them. It is bounded: when full it is emptied and refilled.
var regexCache = struct {
	sync.RWMutex
	m map[string]*regexp.Regexp
}{m: make(map[string]*regexp.Regexp)}

const maxRegexCache = 1024

// compileParamRegex compiles expr anchored at both ends (RE2, linear time).
func compileParamRegex(expr string) (*regexp.Regexp, error) {
	regexCache.RLock()
	re, ok := regexCache.m[expr]
	regexCache.RUnlock()
	if ok {
		return re, nil
	}
	if len(expr) > MaxRegexLen {
		return nil, fmt.Errorf("regex longer than %d bytes", MaxRegexLen)
	}
	// Parse the source alone first: wrapping an unbalanced source such as
	// "a)|(b" would otherwise escape the anchors.
	if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
		return nil, fmt.Errorf("regex: %v", err)
	}
	re, err := regexp.Compile(`\A(?:` + expr + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("regex: %v", err)
	}
	regexCache.Lock()
	if len(regexCache.m) >= maxRegexCache {
		clear(regexCache.m)
	}
	regexCache.m[expr] = re
	regexCache.Unlock()
	return re, nil
}

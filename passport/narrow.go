package passport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Narrowing limits what a minted credential may do when a grant names it:
// the vault entry says the most the credential can ever do; a grant's
// narrowing says how much of that this passport's requests get. Each
// field applies to the kinds that have the notion; an empty field leaves
// that dimension at the vault entry's own limit, except that aws-sts
// credentials need Actions (a session policy names what it allows).
type Narrowing struct {
	// Scopes are OAuth2 scopes (oauth2-client-credentials,
	// gcp-service-account): the token is requested with these only.
	Scopes []string `json:"scopes,omitempty" yaml:"scopes,omitempty" mapstructure:"scopes"`
	// Permissions are GitHub App permissions (github-app), name to
	// level: read, write or admin.
	Permissions map[string]string `json:"permissions,omitempty" yaml:"permissions,omitempty" mapstructure:"permissions"`
	// Repositories are the repository names (github-app) the installation
	// token is limited to.
	Repositories []string `json:"repositories,omitempty" yaml:"repositories,omitempty" mapstructure:"repositories"`
	// Actions are IAM actions (aws-sts), such as s3:GetObject or s3:Get*:
	// the session policy allows these and the sidecar refuses any other.
	Actions []string `json:"actions,omitempty" yaml:"actions,omitempty" mapstructure:"actions"`
	// Resources are ARNs (aws-sts), '*' and '?' as IAM reads them; empty
	// means any resource of the allowed actions.
	Resources []string `json:"resources,omitempty" yaml:"resources,omitempty" mapstructure:"resources"`
	// Regions (aws-sts) limit the regions a request may be signed for.
	Regions []string `json:"regions,omitempty" yaml:"regions,omitempty" mapstructure:"regions"`
}

// GitHub permission levels, least to most.
var permissionLevels = []string{"read", "write", "admin"}

// empty reports whether n narrows nothing: nil, or every field empty.
// An empty narrowing (narrow: {}) is no narrowing, everywhere.
func (n *Narrowing) empty() bool {
	return n == nil || len(n.Scopes) == 0 && len(n.Permissions) == 0 && len(n.Repositories) == 0 &&
		len(n.Actions) == 0 && len(n.Resources) == 0 && len(n.Regions) == 0
}

// Key is a stable digest of n, for caching what was minted under it: two
// narrowings with the same key ask for the same credential. No
// narrowing, nil or empty, has the key "".
func (n *Narrowing) Key() string {
	if n.empty() {
		return ""
	}
	c := Narrowing{
		Scopes: sortedSet(n.Scopes), Repositories: sortedSet(n.Repositories),
		Actions: sortedSet(n.Actions), Resources: sortedSet(n.Resources), Regions: sortedSet(n.Regions),
		Permissions: n.Permissions,
	}
	b, _ := json.Marshal(c) // maps marshal with sorted keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// problems lists what is wrong with n, each naming its field.
func (n *Narrowing) problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for i, s := range n.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") || len(s) > 512 {
			add("scopes[%d] %q: want one OAuth2 scope, no spaces or quotes", i, s)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(n.Permissions)) {
		if !validIdent(p) {
			add("permissions %q: want a GitHub permission name such as contents", p)
		}
		if !slices.Contains(permissionLevels, n.Permissions[p]) {
			add("permissions %s: level %q, want read, write or admin", p, n.Permissions[p])
		}
	}
	for i, r := range n.Repositories {
		if r == "" || len(r) > 100 || strings.ContainsAny(r, "/ \t\r\n*") {
			add("repositories[%d] %q: want a repository name without its owner", i, r)
		}
	}
	for i, a := range n.Actions {
		svc, act, ok := strings.Cut(a, ":")
		if a == "*" {
			continue
		}
		if !ok || !validIdent(strings.ReplaceAll(svc, "-", "_")) || act == "" || !validAction(act) {
			add("actions[%d] %q: want service:Action, such as s3:GetObject or s3:Get*", i, a)
		}
	}
	for i, r := range n.Resources {
		if r != "*" && (!strings.HasPrefix(r, "arn:") || len(r) > 2048 || strings.ContainsAny(r, " \t\r\n\"\\")) {
			add("resources[%d] %q: want an ARN such as arn:aws:s3:::bucket/*, or *", i, r)
		}
	}
	for i, r := range n.Regions {
		if !validRegion(r) {
			add("regions[%d] %q: want an AWS region such as us-east-1", i, r)
		}
	}
	return errs
}

func validIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validAction(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '*' || c == '?' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s) <= 128
}

func validRegion(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// covers returns "" when every credential child could mint, n could too,
// else what is wider in child. No narrowing (nil or empty) leaves the
// credential at the vault entry's limit, which covers anything.
func (n *Narrowing) covers(child *Narrowing) string {
	if n.empty() {
		return ""
	}
	if child.empty() {
		return "no narrowing (the parent narrows its credentials)"
	}
	type list struct {
		name          string
		parent, child []string
		glob          bool
	}
	for _, l := range []list{
		{"scope", n.Scopes, child.Scopes, false},
		{"repository", n.Repositories, child.Repositories, false},
		{"action", n.Actions, child.Actions, true},
		{"resource", n.Resources, child.Resources, true},
		{"region", n.Regions, child.Regions, false},
	} {
		if len(l.parent) == 0 {
			continue
		}
		if len(l.child) == 0 {
			return "any " + l.name
		}
		for _, c := range l.child {
			if !slices.Contains(l.parent, c) && !(l.glob && anyGlobCovers(l.parent, c)) {
				return l.name + " " + c
			}
		}
	}
	if len(n.Permissions) > 0 {
		if len(child.Permissions) == 0 {
			return "any permission"
		}
		for p, lvl := range child.Permissions {
			have, ok := n.Permissions[p]
			if !ok || slices.Index(permissionLevels, lvl) > slices.Index(permissionLevels, have) {
				return fmt.Sprintf("permission %s: %s", p, lvl)
			}
		}
	}
	return ""
}

// anyGlobCovers: a literal child is covered by a parent glob matching it;
// a child with its own wildcard only by an identical parent or "*".
func anyGlobCovers(parents []string, child string) bool {
	for _, p := range parents {
		if p == "*" || p == child {
			return true
		}
		if strings.ContainsAny(child, "*?") {
			continue
		}
		if GlobMatch(p, child) {
			return true
		}
	}
	return false
}

// GlobMatch reports whether s matches the IAM-style pattern p, where '*'
// matches any run of characters (including '/' and ':') and '?' any one.
// AWS compares action names case-insensitively: callers lower-case both
// sides for actions.
func GlobMatch(p, s string) bool {
	// One remembered star, as IAM's matcher: linear in len(p)·len(s)
	// however many stars, since s comes from the agent's request.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		// A star in the pattern is a wildcard even where the text has a
		// star too: tested first.
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
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
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

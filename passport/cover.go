package passport

import (
	"fmt"
	"strings"

	"github.com/stackctl/stack/hostmatch"
)

// Covers reports whether child asks for nothing s does not already allow:
// every child grant must be covered by one grant of s (its hosts, methods,
// paths and credentials within that grant's, and its parameter constraints
// at least as tight). The check is conservative: a child that might allow
// a request s would deny is refused, even where a finer analysis could
// prove it harmless. The error wraps ErrScopeNotSubset and names the first
// uncovered child grant.
func (s Scope) Covers(child Scope) error {
	for i := range child {
		var why string
		for j := range s {
			reason := s[j].covers(&child[i])
			if reason == "" {
				why = ""
				break
			}
			if why == "" {
				why = fmt.Sprintf("parent grant[%d]: %s", j, reason)
			}
		}
		if len(s) == 0 {
			why = "parent scope is empty"
		}
		if why != "" {
			return fmt.Errorf("%w: grant[%d] not covered (%s)", ErrScopeNotSubset, i, why)
		}
	}
	return nil
}

// covers returns "" when g covers c, else what is wider in c.
func (g *Grant) covers(c *Grant) string {
	if c.Handoff != nil {
		return g.coversHandoff(c)
	}
	if g.Handoff != nil {
		return "a handoff grant allows no requests"
	}
	for _, h := range c.Hosts {
		if !g.coversHost(h) {
			return fmt.Sprintf("host %s", h)
		}
	}
	if len(g.Methods) > 0 {
		if len(c.Methods) == 0 {
			return "any method"
		}
		for _, m := range c.Methods {
			if !contains(g.Methods, m) {
				return fmt.Sprintf("method %s", m)
			}
		}
	}
	if len(g.Paths) > 0 {
		if len(c.Paths) == 0 {
			return "any path"
		}
		for _, p := range c.Paths {
			if !anyPathCovers(g.Paths, p) {
				return fmt.Sprintf("path %s", p)
			}
		}
	}
	for _, cr := range c.Credentials {
		if !contains(g.Credentials, cr) {
			return fmt.Sprintf("credential %s", cr)
		}
	}
	for _, pp := range g.Params {
		if !anyParamImplies(c.Params, pp) {
			return fmt.Sprintf("param %s (%s) %s not kept or loosened", pp.Name, pp.From, pp.Op)
		}
	}
	if why := g.Narrow.covers(c.Narrow); why != "" && len(c.Credentials) > 0 {
		return "narrow: " + why
	}
	return ""
}

// coversHost reports whether one of g's hosts covers the child pattern.
func (g *Grant) coversHost(child string) bool {
	for _, p := range g.Hosts {
		if hostmatch.Covers(p, child) {
			return true
		}
	}
	return false
}

func anyPathCovers(parents []string, child string) bool {
	for _, p := range parents {
		if pathCovers(p, child) {
			return true
		}
	}
	return false
}

// pathCovers reports whether every path matched by child is matched by
// parent.
func pathCovers(parent, child string) bool {
	ps, cs := splitPath(parent), splitPath(child)
	pTail := len(ps) > 0 && ps[len(ps)-1] == "**"
	cTail := len(cs) > 0 && cs[len(cs)-1] == "**"
	if pTail {
		ps = ps[:len(ps)-1]
	}
	if cTail {
		cs = cs[:len(cs)-1]
	}
	switch {
	case pTail:
		// The child's fixed part must extend the parent's prefix; what
		// follows is anything, which "**" allows.
		if len(cs) < len(ps) {
			return false
		}
	case cTail:
		return false // "**" is wider than any fixed-length parent
	default:
		if len(cs) != len(ps) {
			return false
		}
	}
	for i, p := range ps {
		if !segmentCovers(p, cs[i]) {
			return false
		}
	}
	return true
}

// segmentCovers: a child segment with its own '*' is covered only by an
// identical or an all-'*' parent segment; a literal one by any parent glob
// that matches it.
func segmentCovers(parent, child string) bool {
	if parent == child || parent == "*" {
		return true
	}
	if strings.Contains(child, "*") {
		return false
	}
	return matchSegment(parent, child)
}

func anyParamImplies(children []ParamConstraint, parent ParamConstraint) bool {
	for _, c := range children {
		if c.Name == parent.Name && c.From == parent.From && c.implies(parent) {
			return true
		}
	}
	return false
}

// implies reports whether every value c accepts is accepted by p.
func (c ParamConstraint) implies(p ParamConstraint) bool {
	switch c.Op {
	case OpEq:
		return p.holds(c.Value)
	case OpIn:
		for _, v := range c.Values {
			if !p.holds(v) {
				return false
			}
		}
		return len(c.Values) > 0
	case OpPrefix:
		// A prefix leaves the rest of the value open, so only a shorter
		// prefix can contain it; against eq, in or regex it is refused.
		return p.Op == OpPrefix && strings.HasPrefix(c.Value, p.Value)
	case OpRegex:
		return p.Op == OpRegex && c.Value == p.Value
	}
	return false
}

package passport

import (
	"errors"
	"fmt"
)

// HandoffGrant lets an agent hand off payloads to other agents through
// its sidecar. A grant that carries one is a handoff grant: it names no
// hosts and allows no request.
type HandoffGrant struct {
	// To are the recipient agents: names, or patterns where '*' matches
	// any run of characters ("drafter", "deploy-*", "*").
	To []string `json:"to" yaml:"to" mapstructure:"to"`
	// Schemas are the payload schemas the agent may send them, as names
	// or patterns ("findings/v1", "findings/*").
	Schemas []string `json:"schemas" yaml:"schemas" mapstructure:"schemas"`
}

// AllowsHandoff reports whether a handoff grant of s lets its agent hand
// off a payload of schema to agent to; when none does, the decision's
// reason says what is missing.
func (s Scope) AllowsHandoff(to, schema string) Decision {
	best := Decision{Grant: -1, Reason: "no handoff grant"}
	for i := range s {
		h := s[i].Handoff
		if h == nil {
			continue
		}
		if !anyGlobMatch(h.To, to) {
			if best.Grant < 0 {
				best = Decision{Grant: i, Reason: "handoff to " + to + " not granted"}
			}
			continue
		}
		if !anyGlobMatch(h.Schemas, schema) {
			best = Decision{Grant: i, Reason: "handoff of schema " + schema + " to " + to + " not granted"}
			continue
		}
		return Decision{Allowed: true, Grant: i}
	}
	return best
}

func anyGlobMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if GlobMatch(p, s) {
			return true
		}
	}
	return false
}

// handoffProblems lists what is wrong with a handoff grant g, each naming its
// field.
func (g *Grant) handoffProblems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(g.Hosts) > 0 || len(g.Methods) > 0 || len(g.Paths) > 0 || len(g.Credentials) > 0 || len(g.Params) > 0 || !g.Narrow.empty() {
		add("handoff: a handoff grant names no hosts, methods, paths, credentials, params or narrowing (write those in a grant of their own)")
	}
	h := g.Handoff
	if len(h.To) == 0 {
		add("handoff.to: at least one recipient agent is required")
	}
	if len(h.Schemas) == 0 {
		add("handoff.schemas: at least one schema is required")
	}
	for i, p := range h.To {
		if err := handoffPattern(p, false); err != nil {
			add("handoff.to[%d] %q: %v", i, p, err)
		}
	}
	for i, p := range h.Schemas {
		if err := handoffPattern(p, true); err != nil {
			add("handoff.schemas[%d] %q: %v", i, p, err)
		}
	}
	return errs
}

// handoffPattern accepts agent names (and, for schemas, '/'-separated
// names) with '*' wildcards.
func handoffPattern(p string, slash bool) error {
	if p == "" || len(p) > 128 {
		return errors.New("want 1 to 128 characters")
	}
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '*':
		case r == '/' && slash:
		default:
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

// coversHandoff returns "" when the handoff grant g covers the handoff
// grant c, else what is wider in c.
func (g *Grant) coversHandoff(c *Grant) string {
	if g.Handoff == nil {
		return "not a handoff grant"
	}
	for _, to := range c.Handoff.To {
		if !anyGlobCovers(g.Handoff.To, to) {
			return "handoff to " + to
		}
	}
	for _, s := range c.Handoff.Schemas {
		if !anyGlobCovers(g.Handoff.Schemas, s) {
			return "handoff schema " + s
		}
	}
	return ""
}

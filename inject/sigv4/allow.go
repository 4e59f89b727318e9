package sigv4

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stackctl/stack/passport"
)

// Allow checks op, signed for region, against a grant's narrowing, as the
// session policy minted from it would: every access's action must match
// one of n.Actions (IAM wildcards, compared case-insensitively), its
// resource one of n.Resources (any when none are named), and region one
// of n.Regions (any when none are named). An unknown operation passes
// only under a grant of its whole service ("s3:*" or "*") on any
// resource. A nil narrowing allows nothing: an aws-sts credential is
// never used unscoped. The error is an *Error (reason.ScopeDenied) that
// says what is not granted.
func Allow(n *passport.Narrowing, region string, op Operation) error {
	if n == nil || len(n.Actions) == 0 {
		return notGranted("the grant names no AWS actions (narrow.actions), so it allows no AWS request")
	}
	if len(n.Regions) > 0 && !slices.Contains(n.Regions, region) {
		return notGranted(fmt.Sprintf("region %s is not granted (the grant allows %s)", region, strings.Join(n.Regions, ", ")))
	}
	anyResource := len(n.Resources) == 0 || slices.Contains(n.Resources, "*")
	if !op.Known() {
		whole := strings.ToLower(op.Service) + ":*"
		if !slices.ContainsFunc(n.Actions, func(a string) bool { a = strings.ToLower(a); return a == "*" || a == whole }) || !anyResource {
			return notGranted(fmt.Sprintf("%s request %s maps to no IAM action STACK knows: only a grant of %s on any resource allows it",
				op.Service, op.Request, whole))
		}
		return nil
	}
	for _, a := range op.Access {
		action := strings.ToLower(a.Action)
		if !slices.ContainsFunc(n.Actions, func(p string) bool { return passport.GlobMatch(strings.ToLower(p), action) }) {
			return notGranted(fmt.Sprintf("action %s (%s) is not granted (the grant allows %s)", a.Action, op.Name, strings.Join(n.Actions, ", ")))
		}
		if anyResource {
			continue
		}
		if !slices.ContainsFunc(n.Resources, func(p string) bool { return passport.GlobMatch(p, a.Resource) }) {
			return notGranted(fmt.Sprintf("%s on %s is not granted: the resource is not among the grant's (%s)",
				a.Action, a.Resource, strings.Join(n.Resources, ", ")))
		}
	}
	return nil
}

// Package workload maps a workload's OIDC token to the agent it acts as,
// so that a sidecar can join the control plane with the identity its
// platform already gives it: a Kubernetes projected service-account token
// with audience "stack", or a CI job's OIDC token.
//
// # Basics
//
// Configure the issuers whose tokens may join and, for each, rules that
// map claims to an agent. The first rule whose claims all match wins.
//
//	v, err := workload.New([]workload.Issuer{{
//		URL: "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
//		Rules: []workload.Rule{
//			{Agent: "billing-bot", Claims: map[string]string{
//				"kubernetes.io/namespace":           "billing",
//				"kubernetes.io/serviceaccount/name": "bot",
//			}},
//			{Agent: "ci-runner", Claims: map[string]string{"kubernetes.io/namespace": "ci-*"}},
//		},
//	}, {
//		URL:   "https://token.actions.githubusercontent.com",
//		Rules: []workload.Rule{{Agent: "deployer", Claims: map[string]string{"repository": "stackctl/*"}}},
//	}}, workload.Options{})
//	id, err := v.Verify(ctx, token)
//	// id.Agent, or workload.Reason(err) such as "workload_no_rule"
//
// Claim paths use '/' between levels so that "kubernetes.io" stays one
// name. Values are path.Match globs, in which '*' does not cross '/'. A
// claim that is missing, or is an object, array or null, matches nothing.
//
// A token is routed to its issuer by the iss it claims, then verified with
// go-oidc: the discovery document names the key set, whose keys are cached
// and fetched again when a token names an unknown kid, so an issuer's key
// rotation needs nothing here. Accepted algorithms are RS256, RS384,
// RS512, ES256, ES384 and EdDSA, whatever the issuer advertises.
//
// # Caveats
//
// New makes no request. Each issuer is discovered by the first Verify
// that needs it, one discovery at a time; while it is unreachable its
// tokens are refused with ErrIssuerUnavailable, and a later Verify tries
// again.
//
// A Kubernetes API server serves its discovery document only to clients
// it lets read it: bind system:service-account-issuer-discovery to
// system:unauthenticated, or give Options.HTTPClient a transport that
// authenticates.
//
// Shared issuers such as GitHub's sign tokens for every workload on the
// platform: rules must pin what is yours (a repository, an owner), and a
// rule without claims is refused.
package workload

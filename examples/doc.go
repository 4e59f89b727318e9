// Package examples holds runnable examples of STACK in use, and the tests
// that keep them working: agents in Go (stripe-go), Python (requests) and
// Node (the openai SDK) under agents/, each configured only by its
// environment; a docker-compose.yml with a control plane and two agents,
// each beside a sidecar that joins it; and Kubernetes manifests under
// kubernetes/: the control plane, and agents whose native sidecars join it
// by workload identity.
//
// The tests in this package build the stack binary, prepare a data
// directory, start `stack proxy` on loopback and run every agent through it
// against a local TLS upstream that plays Stripe and OpenAI and checks it
// receives the real secrets, which the agents never see. They run the
// compose file's setup script against a real `stack control`, with
// sidecars that join it, and the Kubernetes control plane's stack.yaml
// with a sidecar that joins by a token shaped as the API server projects
// it. The Node agent needs
// `npm install --prefix examples/agents/node`; without it that case is
// skipped, unless the environment variable CI is set, when it fails.
package examples

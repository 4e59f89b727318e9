// Package examples holds runnable examples of STACK in use, and the test
// that keeps them working: agents in Go (stripe-go), Python (requests) and
// Node (the openai SDK) under agents/, each configured only by its
// environment; a docker-compose.yml; and Kubernetes manifests under
// kubernetes/ with the sidecar as a native sidecar.
//
// The test in this package builds the stack binary, prepares a data
// directory, starts `stack proxy` on loopback and runs every agent through
// it against a local TLS upstream that plays Stripe and OpenAI and checks it
// receives the real secrets, which the agents never see. The Node agent
// needs `npm install --prefix examples/agents/node`; without it that case is
// skipped, unless the environment variable CI is set, when it fails.
package examples

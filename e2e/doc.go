// Package e2e tests the real `stack proxy` process end to end: it builds the
// binary, prepares a data directory with the CLI, starts the proxy as a child
// process on loopback and sends requests through it with real clients (curl,
// Python requests, Node undici and Go's stripe-go SDK) to a TLS upstream that
// records what it received.
//
// The package holds only tests. Each test makes its own data directory and
// proxy; clients hold only the placeholder stk_ph_stripe and trust only the
// CA that `stack ca export` prints. The Node client needs
// `npm install --prefix e2e/testdata`; without it the Node case is skipped,
// unless the environment variable CI is set, when it fails.
package e2e

// Package stacktest runs the real stack binary and a TLS upstream for
// end-to-end tests.
//
// A test package builds the binary once in TestMain with BuildStack, then
// each test drives it as a user would: CLI runs `stack` commands against a
// data directory in a temporary folder, StartSidecar starts `stack proxy`
// as a child process on ephemeral loopback ports and reads its addresses
// from the run file, and StartTLSUpstream serves the test's fake API
// behind TLS with certificates from its own CA, which the proxy is told to
// trust.
//
// Every child process gets ChildEnv, this process's environment without
// the proxy, CA and STACK_* settings that would change what is tested, and
// every wait is bounded, so a broken binary fails a test instead of
// hanging it.
package stacktest

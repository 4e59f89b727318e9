// Package stack is the root of STACK, a runtime control plane for AI
// agents: a sidecar proxy that checks an agent's passport, injects real
// credentials in place of placeholders, runs detectors inline and writes a
// hash-chained audit log. The packages below it each do one of those jobs;
// cmd/stack wires them into one binary. This package holds only
// repository-wide tests.
package stack

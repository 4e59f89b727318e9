// Package fleet runs a fleet of real sidecars joined to one real control
// plane on loopback and measures how the fleet behaves: how fast a
// revocation reaches every sidecar, whether passports are refreshed
// before they expire, what happens while the control plane is dead or a
// sidecar is cut off from it, and how much memory the control plane needs.
//
// # Basics
//
// Start prepares a work directory, starts `stack control` on a free port
// of 127.0.0.1, a TLS upstream answering for api.example.test and makes
// (`stack init`) one data directory per sidecar. Each scenario then
// registers new agents, starts the sidecars joined to them with one-time
// join tokens, sends each sidecar a steady stream of requests with Go's
// HTTP client (no Proxy-Authorization: a joined sidecar serves its one
// agent) and returns its figures, ready for encoding/json:
//
//	f, err := fleet.Start(ctx, fleet.Options{Bin: bin, Dir: dir, Sidecars: 10})
//	if err != nil { ... }
//	defer f.Close()
//	prop, err := f.Propagation(ctx, fleet.PropagationOptions{Runs: 2})
//
// A scenario's error means the harness could not do its work (a process
// that would not start, a wait that ran out); what the product got wrong
// is listed in the result's Problems, so that a command can print every
// figure and a test can fail on each problem.
//
// # Caveats
//
// Every process shares the machine with the clients that measure it, so
// the times are only as good as the machine is idle; tests assert only
// generous liveness bounds and report the times. A refusal is seen at
// the first request after it applies: the request interval bounds the
// resolution of every propagation time. Close kills every child process;
// children also get SIGKILL if the harness dies (Pdeathsig).
package fleet

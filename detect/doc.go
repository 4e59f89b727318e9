// Package detect is STACK's detector grid: detectors that inspect every
// request and response the sidecar sees, the baselines they learn, and
// the policy that turns their signals into actions (record, alert, block,
// revoke).
//
// # Basics
//
// A Detector looks at an Event (agent, passport, host, method, path,
// credentials, a bounded window of the body, the time) and returns zero
// or more Signals, each with a severity, a score and evidence for people.
// A Grid runs a list of detectors and applies a Policy:
//
//	burst, _ := detect.NewBurst(detect.BurstOptions{})   // credential_burst
//	drift, _ := detect.NewDrift(detect.DriftOptions{})   // scope_drift
//	g, err := detect.NewGrid(detect.GridOptions{
//		Detectors: []detect.Detector{burst, drift},
//		Policy: detect.Policy{
//			Modes: map[string]detect.Mode{"credential_burst": detect.ModeBlock},
//			Rules: []detect.Rule{{
//				Name:      "burst_and_drift",
//				Detectors: []string{"credential_burst", "scope_drift"},
//				Within:    time.Minute,
//				Action:    detect.ActionRevoke,
//			}},
//		},
//	})
//	...
//	d := g.Evaluate(ev)
//	if d.Action.Blocks() { /* 403; and revoke the passport on ActionRevoke */ }
//
// Evaluate does no I/O and is safe for concurrent use. Its Decision lists
// every signal with the Outcome the policy gave it (the action it asked
// for and, when weaker than its mode, why: "passport mode alert",
// "rollout gate", "below min severity warning"), then the composite rules
// that acted.
//
// # Policy
//
// Each detector has a Mode: off (not run), shadow (record only), alert
// (the default), block or revoke (which blocks too). A passport's mode
// claim caps what its requests can trigger: shadow records only, alert
// alerts at most, enforce applies the configured modes. Policy.AlertOnly
// is the rollout gate: nothing goes past alert while it is set. A
// composite Rule acts when all of its detectors fired for one agent within
// its window; Suppressions drop known false positives by agent, host,
// detector and rule; signals below Policy.MinSeverity only record.
// SetPolicy swaps the policy atomically, for a config reload.
//
// # Learned state
//
// credential_burst and scope_drift learn per agent: a baseline rate of
// credential pulls, and a profile of hosts, methods and path templates.
// Both keep bounded memory and implement Persistent, so a Store (its own
// bbolt file) can save their state periodically and on shutdown and load
// it at start:
//
//	st, err := detect.OpenStore(filepath.Join(home, "detect.db"), detect.StoreOptions{})
//	...
//	err = st.Load(burst, drift) // at start
//	err = st.Save(burst, drift) // every few minutes, and on shutdown
//
// # Alerts
//
// A Webhook posts alerts as JSON with a Slack-compatible "text" field and
// the structured fields of the Alert, from one goroutine it owns (Start,
// Close). Notify never blocks: when the queue is full, the alert is
// dropped and counted. Failed posts are retried with exponential backoff
// and jitter on 5xx, 429 and network errors, not on other statuses.
//
// # Storms
//
// A bursting agent makes a detector fire on every request. A Summarizer
// keeps that from costing a record, a log line and an alert each: per
// detector, rule, agent and credential (a SignalKey), Fold lets the first
// signal go out and folds the ones that follow; Due, called periodically,
// returns one Summary per window for each key that folded any, and Close
// returns what is left. Summary.Detail and Summary.Alert are its audit
// detail and its webhook alert. Folding is only about reporting: the
// caller still counts every signal and acts on every decision.
//
// # Caveats
//
// Time comes from Event.Time (or an injected clock when it is zero), never
// from the wall clock inside a detector, so expiry and baselines are
// tested without sleeping. Evidence never quotes a secret: paths are shown
// as templates, with ids and tokens collapsed to {id}. A detector that
// panics fails closed: the grid turns the panic into a critical signal.
package detect

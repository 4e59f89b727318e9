package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/internal/otlptest"
)

// joinedSidecar starts a control plane with agent bot and a sidecar
// joined to it; it returns both data directories and the sidecar's run
// file.
func joinedSidecar(t *testing.T) (ctl, sc string, info runInfo) {
	t.Helper()
	ctl = filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	url := startControl(t, ctl)
	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host=api.example.test,methods=GET,credentials=example", "--ttl", "5m")
	token := strings.TrimSpace(mustRun(t, ctl, "", "control", "join-token", "--agent", "bot"))
	caFile := filepath.Join(t.TempDir(), "control-ca.pem")
	if err := os.WriteFile(caFile, []byte(mustRun(t, ctl, "", "control", "ca", "export")), 0o644); err != nil {
		t.Fatal(err)
	}
	sc = initHome(t)
	info = startSidecar(t, sc, "--control", url, "--control-ca", caFile, "--join-token", token)
	return ctl, sc, info
}

// The fleet audit log through the CLI: a joined sidecar ships its
// records; the control plane answers export, timeline, prove and verify
// --fleet across sidecars, and proofs check offline with the public key.
func TestFleetAuditCLI(t *testing.T) {
	ctl, sc, info := joinedSidecar(t)
	for range 20 {
		proxyReason(t, info.Listen, "")
	}
	// The sidecar's own file, read while it runs, against the fleet's.
	local := func() map[string]string {
		out := mustRun(t, sc, "", "audit", "export", "--format", "jsonl")
		m := map[string]string{}
		for line := range strings.Lines(out) {
			var r struct {
				EventID string `json:"event_id"`
				Hash    string `json:"hash"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("local export %q: %v", line, err)
			}
			m[r.EventID] = r.Hash
		}
		return m
	}
	fleetItems := func() []fleet.Item {
		out := mustRun(t, ctl, "", "audit", "export", "--fleet", "--format", "jsonl")
		var items []fleet.Item
		for line := range strings.Lines(out) {
			var it fleet.Item
			if err := json.Unmarshal([]byte(line), &it); err != nil {
				t.Fatalf("fleet export %q: %v", line, err)
			}
			items = append(items, it)
		}
		return items
	}
	want := local()
	if len(want) < 20 {
		t.Fatalf("the sidecar wrote %d records for 20 requests", len(want))
	}
	var items []fleet.Item
	deadline := time.Now().Add(10 * time.Second)
	for items = fleetItems(); len(items) < len(want); items = fleetItems() {
		if time.Now().After(deadline) {
			t.Fatalf("the fleet log holds %d records, the sidecar %d", len(items), len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, it := range items {
		if h, ok := want[it.Record.EventID]; !ok || h != it.Record.Hash.String() {
			t.Fatalf("fleet record %s (hash %s) is not the sidecar's (%s)", it.Record.EventID, it.Record.Hash, h)
		}
	}
	if out := mustRun(t, ctl, "", "audit", "timeline", "--fleet", "--agent", "bot"); strings.Count(out, "\n") < 20 {
		t.Fatalf("fleet timeline of bot:\n%s", out)
	}

	// A proof, checked online and then offline from a saved bundle.
	id := items[len(items)/2].Record.EventID
	if out := mustRun(t, ctl, "", "audit", "prove", id); !strings.HasPrefix(out, "ok: event "+id) {
		t.Fatalf("prove:\n%s", out)
	}
	dir := t.TempDir()
	pub := filepath.Join(dir, "fleet.pub")
	bundle := filepath.Join(dir, "proof.json")
	if err := os.WriteFile(pub, []byte(mustRun(t, ctl, "", "control", "fleet-key")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte(mustRun(t, ctl, "", "audit", "prove", id, "--json")), 0o644); err != nil {
		t.Fatal(err)
	}
	nowhere := filepath.Join(t.TempDir(), "nothing-here")
	if out := mustRun(t, nowhere, "", "audit", "prove", "--verify", bundle, "--fleet-key-file", pub); !strings.HasPrefix(out, "ok: event "+id) {
		t.Fatalf("offline prove:\n%s", out)
	}
	b, _ := os.ReadFile(bundle)
	var p fleet.Proof
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	p.Item.Record.Status = 200 // claim the denied request went through
	b, _ = json.Marshal(p)
	os.WriteFile(bundle, b, 0o644)
	if code, out, _ := runStack(t, nowhere, "", "audit", "prove", "--verify", bundle, "--fleet-key-file", pub); code != 1 || !strings.HasPrefix(out, "FAIL") {
		t.Fatalf("a doctored proof: exit %d\n%s", code, out)
	}
	if code, _, errs := runStack(t, ctl, "", "audit", "prove", "no-such-event"); code == 0 || !strings.Contains(errs, "no record with event id") {
		t.Fatalf("prove of an unknown event: %d %s", code, errs)
	}

	// Consistency between two checkpoints.
	ck := filepath.Join(dir, "fleet.checkpoint")
	if out := mustRun(t, ctl, "", "audit", "verify", "--fleet", "--save", ck); !strings.Contains(out, "ok: the fleet log's checkpoint of size") {
		t.Fatalf("verify --fleet:\n%s", out)
	}
	for range 5 {
		proxyReason(t, info.Listen, "")
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		out := mustRun(t, ctl, "", "audit", "verify", "--fleet", "--since", ck)
		if !strings.Contains(out, "ok: the fleet log grew from") {
			t.Fatalf("verify --fleet --since:\n%s", out)
		}
		var from, to int
		fmt.Sscanf(out, "ok: the fleet log grew from %d to %d", &from, &to)
		if to > from {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet log did not grow:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _, errs := runStack(t, ctl, "", "audit", "verify", "--since", ck); code != 2 || !strings.Contains(errs, "--fleet") {
		t.Fatalf("--since without --fleet: %d %s", code, errs)
	}
	if m := scrape(t, info.Admin); !strings.Contains(m, "stack_audit_ship_lag_records") || !strings.Contains(m, "stack_audit_shipped_records_total") {
		t.Fatalf("sidecar metrics lack the shipping gauges:\n%s", m)
	}
}

// The fleet log's records reach a SIEM: the control plane exports them to
// the OpenTelemetry Collector's own OTLP receiver on loopback, each once
// it is in the fleet log, and keeps its place in a cursor file.
func TestFleetAuditToOTLP(t *testing.T) {
	sink := new(consumertest.LogsSink)
	endpoint := otlptest.Start(t, sink)
	t.Setenv("STACK_CONTROL_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-siem-token=tok%20en")
	ctl, sc, info := joinedSidecar(t)
	for range 10 {
		proxyReason(t, info.Listen, "")
	}
	want := map[string]bool{}
	for line := range strings.Lines(mustRun(t, sc, "", "audit", "export", "--format", "jsonl")) {
		var r struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		want[r.EventID] = true
	}
	got := map[string]int{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		clear(got)
		for _, ld := range sink.AllLogs() {
			for _, rl := range ld.ResourceLogs().All() {
				if a, _ := rl.Resource().Attributes().Get("stack.agent"); a.Str() != "bot" {
					t.Fatalf("resource stack.agent %q", a.Str())
				}
				for _, sl := range rl.ScopeLogs().All() {
					for _, lr := range sl.LogRecords().All() {
						id, _ := lr.Attributes().Get("stack.event_id")
						got[id.Str()]++
					}
				}
			}
		}
		n := 0
		for id := range want {
			if got[id] > 0 {
				n++
			}
		}
		if n == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %d of the sidecar's %d records", n, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %s received %d times", id, n)
		}
	}
	// The exporter counts, and moves its cursor, once the receiver's
	// answer is back, a moment after the receiver has the records.
	var run controlRunInfo
	if b, err := os.ReadFile(filepath.Join(ctl, controlRunFile)); err != nil || json.Unmarshal(b, &run) != nil {
		t.Fatalf("control run file: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(mustRun(t, ctl, "", "control", "ca", "export")))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for {
		resp, err := hc.Get(run.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "\nstack_control_otlp_exported_records_total ") &&
			!strings.Contains(string(b), "\nstack_control_otlp_exported_records_total 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter counted nothing:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h, err := otlpHeaders("a=1, b = x%2Cy ,"); err != nil || h["a"] != "1" || h["b"] != "x,y" {
		t.Fatalf("OTEL_EXPORTER_OTLP_HEADERS: %v %v", h, err)
	}
	if _, err := otlpHeaders("Authorization Bearer secret"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a malformed header entry: %v", err)
	}
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/detect"
	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/reason"
)

// End to end: a control plane and a joined sidecar; the agent bursts on
// its credential with credential_burst in alert and gets its answers; the
// operator sets credential_burst to block for the agent, and its next
// burst request is refused, with nothing restarted.
func TestAgentDetectorModesReachTheSidecar(t *testing.T) {
	const host = "api.example.test"
	up := stacktest.StartTLSUpstream(t, "upstream CA", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk_live_burst_secret" {
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"balance":1}`))
	}), func(serverName string) (string, error) { return host, nil })

	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	controlURL := startControl(t, ctl)
	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host="+host+",methods=GET,credentials=example", "--ttl", "5m")
	mustRun(t, ctl, "sk_live_burst_secret", "vault", "put", "example", "--host", host, "--render", "bearer")
	token := strings.TrimSpace(mustRun(t, ctl, "", "control", "join-token", "--agent", "bot"))
	caFile := filepath.Join(t.TempDir(), "control-ca.pem")
	if err := os.WriteFile(caFile, []byte(mustRun(t, ctl, "", "control", "ca", "export")), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := initHome(t)
	// A burst is 3 pulls of one credential within the window.
	cfg := "detect:\n  credential_burst:\n    mode: alert\n    absolute_cap: 3\n"
	if err := os.WriteFile(filepath.Join(sc, "stack.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	info := startSidecar(t, sc, "--control", controlURL, "--control-ca", caFile, "--join-token", token,
		"--allow-cidr", "127.0.0.1/32", "--resolve", host+"=127.0.0.1", "--upstream-ca", up.CAFile)

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(mustRun(t, sc, "", "ca", "export"))) {
		t.Fatal("the sidecar's CA holds no certificate")
	}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: info.Listen}),
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	defer tr.CloseIdleConnections()
	agent := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	pull := func() (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, up.URL(host, "/v1/balance"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer stk_ph_example")
		resp, err := agent.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(reason.Header)
	}
	modes := func() control.AgentDetectors {
		t.Helper()
		var ad control.AgentDetectors
		if err := json.Unmarshal([]byte(mustRun(t, ctl, "", "agent", "detectors", "bot", "--json")), &ad); err != nil {
			t.Fatal(err)
		}
		return ad
	}

	// The rollout starts in alert.
	out := mustRun(t, ctl, "", "agent", "detectors", "bot", "--set", "credential_burst=alert", "--reason", "start the rollout")
	if !strings.Contains(out, "agent bot: credential_burst is alert") || !strings.Contains(out, "clean for 0s of 48h") ||
		!strings.Contains(out, "rollout gate 48h") || !strings.Contains(out, "by operator: start the rollout") {
		t.Fatalf("set to alert:\n%s", out)
	}
	for i := range 6 {
		if st, why := pull(); st != http.StatusOK {
			t.Fatalf("pull %d in alert: %d %s", i, st, why)
		}
	}
	// The sidecar ships the signals: the gate starts again from them.
	deadline := time.Now().Add(10 * time.Second)
	for stateIn(modes(), "credential_burst").LastSignal.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no signal of the burst reached the control plane: %+v", modes())
		}
		time.Sleep(100 * time.Millisecond)
	}

	code, out, errs := runStack(t, ctl, "", "agent", "detectors", "bot", "--set", "credential_burst=block", "--reason", "burst seen in alert")
	if code != 0 || !strings.Contains(out, "credential_burst is block") || !strings.Contains(errs, "the rollout gate was not met: credential_burst was alert and clean for") {
		t.Fatalf("set to block: exit %d\n%s\n%s", code, out, errs)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, why := pull()
		if st == http.StatusForbidden && why == reason.DetectorBlocked {
			break
		}
		if st != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("after credential_burst=block for bot: %d %s, want 403 %s", st, why, reason.DetectorBlocked)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Back to the sidecar's configured mode: answered again.
	mustRun(t, ctl, "", "agent", "detectors", "bot", "--set", "credential_burst=default", "--reason", "done")
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, why := pull()
		if st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after credential_burst=default: %d %s, want 200", st, why)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Refusals name what is wrong; input errors exit 2.
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"--set without a mode":    {[]string{"bot", "--set", "credential_burst"}, 2, "DETECTOR=MODE"},
		"--set without a reason":  {[]string{"bot", "--set", "credential_burst=block"}, 2, "--reason"},
		"--reason without --set":  {[]string{"bot", "--reason", "why"}, 2, "--set"},
		"an unknown detector":     {[]string{"bot", "--set", "burst=block", "--reason", "x"}, 2, `detector "burst"`},
		"an unknown mode":         {[]string{"bot", "--set", "credential_burst=enforce", "--reason", "x"}, 2, `mode "enforce"`},
		"an unknown agent":        {[]string{"nobody"}, 1, `no agent "nobody"`},
		"an unknown agent to set": {[]string{"nobody", "--set", "credential_burst=block", "--reason", "x"}, 1, `no agent "nobody"`},
	} {
		if code, _, errs := runStack(t, ctl, "", append([]string{"agent", "detectors"}, tc.args...)...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d %q, want %d and %q", name, code, errs, tc.code, tc.want)
		}
	}

	// Each change is in the control plane's audit log, with who and why.
	var changes []string
	for line := range strings.Lines(mustRun(t, ctl, "", "audit", "export", "--format", "jsonl")) {
		var r struct {
			Action   string `json:"action"`
			Agent    string `json:"agent_id"`
			Detector string `json:"detector"`
			Detail   string `json:"detail"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Action == control.ActionDetectorModeChanged && r.Agent == "bot" && r.Detector == "credential_burst" {
			changes = append(changes, r.Detail)
		}
	}
	want := []string{
		"mode alert (was default) by operator: start the rollout",
		"mode block (was alert) by operator: burst seen in alert",
		"mode default (was block) by operator: done",
	}
	if strings.Join(changes, "\n") != strings.Join(want, "\n") {
		t.Fatalf("detector_mode_changed records:\n%s\nwant:\n%s", strings.Join(changes, "\n"), strings.Join(want, "\n"))
	}
}

// The sidecar applies what it can and refuses the rest whole: the modes
// in force stay, never a weaker default.
func TestAgentDetectorModesFailClosed(t *testing.T) {
	burst, err := detect.NewBurst(detect.BurstOptions{})
	if err != nil {
		t.Fatal(err)
	}
	drift, err := detect.NewDrift(detect.DriftOptions{})
	if err != nil {
		t.Fatal(err)
	}
	grid, err := detect.NewGrid(detect.GridOptions{Detectors: []detect.Detector{burst, drift}})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	apply := agentDetectorModes(grid, zap.New(core))
	block := map[string]detect.Mode{detect.BurstName: detect.ModeBlock}

	apply("bot", map[string]string{detect.BurstName: "block"})
	if got := grid.AgentModes("bot"); !maps.Equal(got, block) || logs.FilterMessageSnippet("detector modes set").Len() != 1 {
		t.Fatalf("applied: %v, logs %v", got, logs.All())
	}
	apply("bot", map[string]string{detect.BurstName: "block"})
	if logs.FilterMessageSnippet("detector modes set").Len() != 1 {
		t.Error("a resync handing over the modes in force was logged as a change")
	}
	for name, modes := range map[string]map[string]string{
		"an unknown mode":     {detect.BurstName: "enforce", detect.DriftName: "block"},
		"an empty mode":       {detect.BurstName: ""},
		"an unknown detector": {"tool_poisoning": "block"},
	} {
		apply("bot", modes)
		if got := grid.AgentModes("bot"); !maps.Equal(got, block) {
			t.Errorf("%s: modes in force %v, want %v kept", name, got, block)
		}
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("refused").Len(); n != 3 {
		t.Errorf("%d refusals logged at error, want 3: %v", n, logs.All())
	}
	apply("bot", map[string]string{detect.DriftName: control.ModeDefault})
	if got := grid.AgentModes("bot"); got != nil {
		t.Errorf("after every mode went back to default: %v", got)
	}
}

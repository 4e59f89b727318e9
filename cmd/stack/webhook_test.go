package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stackctl/stack/control/admission"
)

// With control.webhook set, stack control serves the admission webhook on
// its listener, to whoever trusts its CA; a sidecar told which agent it
// must be (control.agent, which the webhook sets from the pod's label)
// refuses to serve as another.
func TestControlServesWebhook(t *testing.T) {
	t.Setenv("STACK_CONTROL_WEBHOOK_IMAGE", "stack:dev")
	t.Setenv("STACK_CONTROL_WEBHOOK_CONTROL_URL", "https://stack-control.stack-system.svc:9443")
	ctl := filepath.Join(t.TempDir(), "ctl")
	mustRun(t, ctl, "", "init", "--control")
	url := startControl(t, ctl)
	pem := mustRun(t, ctl, "", "control", "ca", "export")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(pem))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()

	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"stack.run/agent":"bot"}},"spec":{"containers":[{"name":"agent","image":"x"}]}}}}`
	resp, err := client.Post(url+admission.Path, "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out admissionv1.AdmissionReview
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Response == nil || !out.Response.Allowed ||
		!bytes.Contains(out.Response.Patch, []byte(`"--control=https://stack-control.stack-system.svc:9443"`)) {
		t.Fatalf("%s: %s", resp.Status, body)
	}

	mustRun(t, ctl, "", "agent", "register", "bot", "--grant", "host=api.example.test", "--ttl", "5m")
	token := strings.TrimSpace(mustRun(t, ctl, "", "control", "join-token", "--agent", "bot"))
	caFile := filepath.Join(t.TempDir(), "control-ca.pem")
	if err := os.WriteFile(caFile, []byte(pem), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STACK_CONTROL_AGENT", "billing-bot")
	code, _, errs := runStack(t, initHome(t), "", "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--control", url, "--control-ca", caFile, "--join-token", token)
	if code == 0 || !strings.Contains(errs, `joined the control plane as agent "bot", but control.agent`) {
		t.Fatalf("a sidecar joined as another agent than control.agent: exit %d\n%s", code, errs)
	}
}

package examples

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/handoff/handofftest"
	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/internal/testenv"
	"github.com/stackctl/stack/proxy"
	"github.com/stackctl/stack/reason"
)

// The handoff example without docker (docker-compose.handoff.yml):
// compose-setup.sh sets up a control plane and the scraper's and the
// drafter's sidecars; the Python scraper hands findings to the Node
// drafter through them. Then every refusal the issue names, each with its
// reason and an audit record, and the payloads in no file or log of the
// control plane or the sidecars.
func TestHandoffExample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, two sidecars and the agents; skipped in -short mode")
	}
	testenv.LookPath(t, "sh")
	testenv.LookPath(t, "python3")
	needNode(t)

	schemaFile, _ := filepath.Abs(filepath.Join("handoff", "findings.schema.json"))
	dir, setup := composeVolumes(t, []string{"bot", "reporter", "scraper", "drafter"}, "HANDOFF_SCHEMA_FILE="+schemaFile)
	setup("init")
	controlHome := dir(controlDataDir)
	ctl := startControl(t, controlHome)
	setup("enroll", "STACK_HOME="+controlHome, "STACK_CONTROL_URL="+ctl.url, "STRIPE_SECRET_KEY=sk_test_unused")

	sidecar := func(name string) *stacktest.Sidecar {
		home := dir(setupDataDir + "/" + name)
		return stacktest.StartSidecar(t, stackBin, home, childEnv(),
			"--join-token-file="+filepath.Join(home, setupJoinToken),
			"--control="+ctl.url, "--control-ca="+dir(controlCADir+"/ca.pem"))
	}
	scraper, drafter := sidecar("scraper"), sidecar("drafter")
	scraperCA, drafterCA := dir(setupExportDir+"/scraper-ca/ca.pem"), dir(setupExportDir+"/drafter-ca/ca.pem")

	// A marker no file or log may hold: it is in every payload.
	marker := "findings-" + stacktest.RandomHex(t, 12)
	payloadFile := filepath.Join(t.TempDir(), "payload.json")
	writePayload := func(v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(payloadFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runScraper := func(env ...string) stacktest.Result {
		script, _ := filepath.Abs(filepath.Join("agents", "python", "handoff_scraper.py"))
		return stacktest.Run(t, stacktest.Command{Name: "python3", Args: []string{script, payloadFile},
			Env: childEnv(append([]string{"HTTPS_PROXY=http://" + scraper.Listen, "SSL_CERT_FILE=" + scraperCA}, env...)...)})
	}
	runDrafter := func() stacktest.Result {
		script, _ := filepath.Abs(filepath.Join("agents", "node", "handoff-drafter.mjs"))
		return stacktest.Run(t, stacktest.Command{Name: "node", Args: []string{script},
			Env: childEnv("HTTPS_PROXY=http://"+drafter.Listen, "NODE_EXTRA_CA_CERTS="+drafterCA, "HANDOFF_WAIT=10")})
	}
	findings := map[string]any{"topic": marker, "findings": []map[string]any{{"title": "rate limits", "url": "https://example.com/docs"}}}

	// The example: Python sends, Node receives, through their sidecars.
	writePayload(findings)
	sent := runScraper()
	if sent.Code != 0 || !strings.Contains(sent.Stdout, "to drafter, schema findings/v1") {
		t.Fatalf("scraper: exit %d\n%s%s\nsidecar log:\n%s", sent.Code, sent.Stdout, sent.Stderr, scraper.Log())
	}
	id := strings.Fields(sent.Stdout)[1]
	got := runDrafter()
	if got.Code != 0 || !strings.Contains(got.Stdout, "handoff "+id+" from scraper, schema findings/v1") || !strings.Contains(got.Stdout, marker) {
		t.Fatalf("drafter: exit %d\n%s%s\nsidecar log:\n%s", got.Code, got.Stdout, got.Stderr, drafter.Log())
	}

	// What the agents see of refusals, through their sidecars.
	call := func(sc *stacktest.Sidecar, caFile, method, path string, body any) (int, string, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "https://"+proxy.HandoffHost+path, rd)
		resp, err := agentClient(t, sc.Listen, caFile).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(reason.Header), b
	}
	expect := func(what string, status int, why string, gotStatus int, gotWhy string, body []byte) {
		t.Helper()
		if gotStatus != status || gotWhy != why {
			t.Errorf("%s: %d %s, want %d %s\n%s", what, gotStatus, gotWhy, status, why, body)
		}
		if bytes.Contains(body, []byte(marker)) {
			t.Errorf("%s: the refusal quotes the payload: %s", what, body)
		}
	}
	fetch := func(id string) (int, string, []byte) {
		return call(drafter, drafterCA, http.MethodGet, proxy.HandoffPath+"/"+id, nil)
	}
	st, why, body := fetch(id)
	expect("a second fetch (replay)", http.StatusGone, reason.HandoffGone, st, why, body)

	// The same through MCP: `stack mcp --agent` beside each agent, started
	// as an agent runtime starts an MCP server, driven by the SDK's client.
	mcpAgent := func(sc *stacktest.Sidecar, caFile string) *mcp.ClientSession {
		t.Helper()
		cmd := exec.Command(stackBin, "mcp", "--agent")
		cmd.Env = childEnv("HTTPS_PROXY=http://"+sc.Listen, "SSL_CERT_FILE="+caFile, "STACK_HOME="+t.TempDir())
		s, err := mcp.NewClient(&mcp.Implementation{Name: "agent-runtime", Version: "1"}, nil).Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	tool := func(s *mcp.ClientSession, name string, args map[string]any) (string, bool) {
		t.Helper()
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.IsError {
			b, _ := json.Marshal(res.Content)
			return string(b), false
		}
		b, _ := json.Marshal(res.StructuredContent)
		return string(b), true
	}
	scraperMCP, drafterMCP := mcpAgent(scraper, scraperCA), mcpAgent(drafter, drafterCA)
	if out, ok := tool(scraperMCP, "my_passport", nil); !ok || !strings.Contains(out, `"agent":"scraper"`) || !strings.Contains(out, `"to":["drafter"]`) {
		t.Errorf("my_passport: %s", out)
	}
	out, ok := tool(scraperMCP, "hand_off", map[string]any{"to": "drafter", "schema": "findings/v1", "payload": findings, "ttl": "10m"})
	var viaMCP struct {
		ID string `json:"id"`
	}
	if !ok || json.Unmarshal([]byte(out), &viaMCP) != nil || viaMCP.ID == "" {
		t.Fatalf("hand_off: %s", out)
	}
	if out, ok := tool(scraperMCP, "hand_off", map[string]any{"to": "bot", "schema": "findings/v1", "payload": findings}); ok || !strings.Contains(out, reason.HandoffNotGranted) {
		t.Errorf("hand_off to an agent the grant does not name: %s", out)
	}
	if out, ok := tool(drafterMCP, "handoff_inbox", nil); !ok || !strings.Contains(out, viaMCP.ID) {
		t.Errorf("handoff_inbox: %s", out)
	}
	if out, ok := tool(drafterMCP, "fetch_handoff", map[string]any{"id": viaMCP.ID}); !ok || !strings.Contains(out, marker) || !strings.Contains(out, `"from":"scraper"`) {
		t.Errorf("fetch_handoff: %s", out)
	}
	if out, ok := tool(drafterMCP, "fetch_handoff", map[string]any{"id": viaMCP.ID}); ok || !strings.Contains(out, reason.HandoffGone) {
		t.Errorf("a second fetch_handoff: %s", out)
	}

	writePayload(map[string]any{"topic": marker, "findings": []map[string]any{{"title": "no url"}}})
	if res := runScraper(); res.Code == 0 || !strings.Contains(res.Stderr, reason.HandoffSchemaViolation) || !strings.Contains(res.Stderr, "/findings/0") {
		t.Errorf("a payload that breaks the schema, sent: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := runScraper("HANDOFF_TO=bot"); res.Code == 0 || !strings.Contains(res.Stderr, reason.HandoffNotGranted) {
		t.Errorf("a handoff to an agent the grant does not name: exit %d\n%s", res.Code, res.Stderr)
	}
	st, why, body = call(drafter, drafterCA, http.MethodPost, proxy.HandoffPath, map[string]any{"to": "scraper", "schema": "findings/v1", "payload": findings})
	expect("the drafter, with no handoff grant, sending", http.StatusForbidden, reason.HandoffNotGranted, st, why, body)
	// Valid by the schema and under the request limit, but too large once
	// signed and encrypted.
	var many []map[string]any
	for range 60 {
		many = append(many, map[string]any{"title": marker, "url": "https://example.com/", "summary": strings.Repeat("x", 3500)})
	}
	big := map[string]any{"topic": marker, "findings": many}
	st, why, body = call(scraper, scraperCA, http.MethodPost, proxy.HandoffPath, map[string]any{"to": "drafter", "schema": "findings/v1", "payload": big})
	expect("an oversized payload", http.StatusRequestEntityTooLarge, reason.HandoffTooLarge, st, why, body)

	// Handoffs that reach the drop-off without the scraper's sidecar
	// sealing them: deposited with its control-plane credential, as one
	// who stole it could, and sealed here.
	cp := newControlCaller(t, ctl.url, dir(controlCADir+"/ca.pem"), dir(setupDataDir+"/scraper/control-state.json"))
	var issued control.PassportResponse
	cp.must(http.MethodPost, control.PathIssue, nil, &issued)
	keys := new(handoff.AgentKeys)
	if err := json.Unmarshal(issued.HandoffKeys, keys); err != nil {
		t.Fatal(err)
	}
	var drafterKeys handoff.PublicKeys
	cp.must(http.MethodGet, control.PathHandoffKeys+"/drafter", nil, &drafterKeys)
	deposit := func(req handoff.SealRequest, with *handoff.AgentKeys, tamper func(string) string) string {
		t.Helper()
		req.From, req.Passport = "scraper", issued.Passport
		if req.To == "" {
			req.To = "drafter"
		}
		if req.Schema == "" {
			req.Schema = "findings/v1"
		}
		if req.TTL == 0 {
			req.TTL = time.Hour
		}
		if req.Payload == nil {
			req.Payload, _ = json.Marshal(findings)
		}
		tok, id, err := handoff.Seal(req, with, drafterKeys.Enc)
		if err != nil {
			t.Fatal(err)
		}
		if tamper != nil {
			tok = tamper(tok)
		}
		var m control.HandoffMeta
		cp.must(http.MethodPost, control.PathHandoffs, control.HandoffDeposit{ID: id, To: "drafter", Schema: req.Schema, Token: tok, TTL: control.Duration(req.TTL)}, &m)
		return m.ID
	}
	stranger, err := handoff.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		id     string
		status int
		why    string
	}{
		{"changed ciphertext", deposit(handoff.SealRequest{}, keys, handofftest.FlipCiphertext), http.StatusUnprocessableEntity, reason.HandoffRejected},
		{"sealed for another agent", deposit(handoff.SealRequest{To: "bot"}, keys, nil), http.StatusUnprocessableEntity, reason.HandoffRejected},
		{"signed by a key the passport does not confirm", deposit(handoff.SealRequest{}, stranger, nil), http.StatusUnprocessableEntity, reason.HandoffRejected},
		{"a schema the sender's grant does not name", deposit(handoff.SealRequest{Schema: "other/v1"}, keys, nil), http.StatusUnprocessableEntity, reason.HandoffRejected},
		{"a payload that breaks the schema, received", deposit(handoff.SealRequest{Payload: json.RawMessage(`{"topic":"` + marker + `"}`)}, keys, nil), http.StatusUnprocessableEntity, reason.HandoffSchemaViolation},
	} {
		st, why, body := fetch(tc.id)
		expect(tc.name, tc.status, tc.why, st, why, body)
	}
	expiring := deposit(handoff.SealRequest{TTL: time.Second}, keys, nil)
	time.Sleep(1500 * time.Millisecond)
	st, why, body = fetch(expiring)
	expect("expired", http.StatusGone, reason.HandoffExpired, st, why, body)
	st, why, body = fetch(strings.Repeat("0", 32))
	expect("a handoff that never was", http.StatusNotFound, reason.HandoffUnknown, st, why, body)

	// A revoked sender: its undelivered handoff is withdrawn, and it sends
	// no more.
	writePayload(findings)
	if res := runScraper(); res.Code != 0 {
		t.Fatalf("scraper: exit %d\n%s", res.Code, res.Stderr)
	}
	operator := stacktest.CLI{Bin: stackBin, Home: controlHome, Env: childEnv("STACK_CONTROL_URL=" + ctl.url)}
	operator.Must(t, "", "passport", "revoke", "--agent", "scraper", "--reason", "test")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// urllib shows only the status of a refused CONNECT; the sidecar's
		// audit log has the reason (below).
		res := runScraper()
		if res.Code != 0 && strings.Contains(res.Stderr, "403") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked scraper still sends: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _, body = call(drafter, drafterCA, http.MethodGet, proxy.HandoffPath, nil)
	if st != http.StatusOK || string(bytes.TrimSpace(body)) != "[]" {
		t.Errorf("the drafter's inbox after the scraper's revocation: %d %s", st, body)
	}
	// The endpoint answers the clients agents use however they ask: curl
	// offering HTTP/2 or only HTTP/1.1, Go speaking only HTTP/2 (as gRPC
	// does), and plain http through the proxy.
	for _, v := range []string{"--http2", "--http1.1"} {
		res := stacktest.Run(t, stacktest.Command{Name: "curl", Args: []string{"-s", "-S", "-w", " %{http_code}", v,
			"--proxy", "http://" + drafter.Listen, "--cacert", drafterCA, "https://" + proxy.HandoffHost + proxy.HandoffPath}, Env: childEnv()})
		if f := strings.Fields(res.Stdout); res.Code != 0 || len(f) != 2 || f[0] != "[]" || f[1] != "200" {
			t.Errorf("curl %s: exit %d, %q\n%s", v, res.Code, res.Stdout, res.Stderr)
		}
	}
	h2 := agentClient(t, drafter.Listen, drafterCA)
	h2.Transport.(*http.Transport).Protocols = new(http.Protocols)
	h2.Transport.(*http.Transport).Protocols.SetHTTP2(true)
	plain := agentClient(t, drafter.Listen, drafterCA)
	for _, c := range []struct {
		url    string
		client *http.Client
		major  int
	}{
		{"https://" + proxy.HandoffHost + proxy.HandoffPath, h2, 2},
		{"http://" + proxy.HandoffHost + proxy.HandoffPath, plain, 1},
	} {
		resp, err := c.client.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != c.major {
			t.Errorf("Go client, %s: %s %s", c.url, resp.Proto, resp.Status)
		}
	}
	if list := operator.Must(t, "", "handoff", "list"); strings.Contains(list, "scraper") {
		t.Errorf("stack handoff list after the revocation:\n%s", list)
	}

	// Each refusal is in the audit log of the sidecar that refused, and
	// the control plane's log has the deposits, deliveries, expiry and
	// withdrawal: all with hashes, never the payload.
	records := func(home string) []audit.Record {
		out := stacktest.CLI{Bin: stackBin, Home: home, Env: childEnv()}.Must(t, "", "audit", "export", "--format", "jsonl")
		var rs []audit.Record
		for line := range strings.Lines(out) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	count := func(rs []audit.Record, action, why string) int {
		n := 0
		for _, r := range rs {
			if r.Action == action && (why == "" || r.Reason == why) {
				n++
			}
		}
		return n
	}
	dr, sr := records(drafter.Home), records(scraper.Home)
	for _, w := range []struct {
		rs     []audit.Record
		action string
		why    string
		n      int
	}{
		{sr, proxy.ActionHandoffSent, "", 3},
		{dr, proxy.ActionHandoffReceived, "", 2},
		{dr, audit.ActionRequestDenied, reason.HandoffGone, 2},
		{dr, audit.ActionRequestDenied, reason.HandoffRejected, 4},
		{dr, audit.ActionRequestDenied, reason.HandoffSchemaViolation, 1},
		{dr, audit.ActionRequestDenied, reason.HandoffExpired, 1},
		{dr, audit.ActionRequestDenied, reason.HandoffNotGranted, 1},
		{sr, audit.ActionRequestDenied, reason.HandoffSchemaViolation, 1},
		{sr, audit.ActionRequestDenied, reason.HandoffNotGranted, 2},
		{sr, audit.ActionRequestDenied, reason.HandoffTooLarge, 1},
		{sr, audit.ActionRequestDenied, reason.PassportRevoked, 1},
	} {
		if got := count(w.rs, w.action, w.why); got < w.n {
			t.Errorf("%d %s %s records, want %d", got, w.action, w.why, w.n)
		}
	}
	scraper.Stop(t)
	drafter.Stop(t)
	ctl.stop(t)

	// Nothing anywhere holds a payload: the control plane's store, fleet
	// log and audit log, the sidecars' audit logs, every log printed.
	for _, home := range []string{controlHome, drafter.Home, scraper.Home} {
		filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(marker)) {
					t.Errorf("%s holds a handoff's payload", p)
				}
			}
			return nil
		})
	}
	for name, log := range map[string]string{"control plane": ctl.output(), "scraper sidecar": scraper.Log(), "drafter sidecar": drafter.Log()} {
		if strings.Contains(log, marker) {
			t.Errorf("the %s's log holds a handoff's payload", name)
		}
	}
}

// agentClient is an agent's HTTP client: through the sidecar at listen,
// trusting its CA, with no passport of its own.
func agentClient(t *testing.T, listen, caFile string) *http.Client {
	t.Helper()
	pool, err := loadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: listen}), TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// controlCaller calls the control plane's sidecar API with a sidecar's
// credential, read from its control-state.json.
type controlCaller struct {
	t     *testing.T
	base  string
	token string
	c     *http.Client
}

func newControlCaller(t *testing.T, base, caFile, stateFile string) *controlCaller {
	t.Helper()
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Token == "" {
		t.Fatalf("%s: no sidecar credential (%v)", stateFile, err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &controlCaller{t: t, base: base, token: st.Token, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *controlCaller) must(method, path string, in, out any) {
	c.t.Helper()
	var rd io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatal(fmt.Errorf("%s %s: %w", method, path, err))
		}
	}
}

// docker-compose.handoff.yml parses strictly and wires the example as
// TestHandoffExample runs it: init and enroll mount the two agents' data
// directories and the schema, each sidecar joins the control plane of
// docker-compose.yml, and each agent shares its sidecar's network
// namespace, trusts only its CA and runs a script that exists.
func TestComposeHandoffWiring(t *testing.T) {
	base, f := loadCompose(t), loadComposeFile(t, "docker-compose.handoff.yml")
	svc := func(name string) composeService {
		s, ok := f.Services[name]
		if !ok {
			t.Fatalf("service %s is missing", name)
		}
		return s
	}
	for _, name := range []string{"scraper", "drafter"} {
		if m, ok := svc("init").mountAt(setupDataDir + "/" + name); !ok || m.source != name+"-data" {
			t.Errorf("init: want %s-data at %s/%s", name, setupDataDir, name)
		}
		if m, ok := svc("init").mountAt(setupExportDir + "/" + name + "-ca"); !ok || m.source != name+"-ca" {
			t.Errorf("init: want %s-ca at %s/%s-ca", name, setupExportDir, name)
		}
		if _, ok := svc("enroll").mountAt(setupDataDir + "/" + name); !ok {
			t.Errorf("enroll: want %s's data directory, for its join token", name)
		}
		sc := svc(name + "-sidecar")
		if !sc.runsProxy() {
			t.Errorf("%s-sidecar does not run stack proxy", name)
		}
		for _, flag := range []string{"control", "control-ca", "join-token-file", "listen"} {
			if got, want := oneFlag(t, name+"-sidecar", sc.Command, flag), oneFlag(t, "bot-sidecar", base.XSidecar.Command, flag); got != want {
				t.Errorf("%s-sidecar --%s=%s, want %s as docker-compose.yml's sidecars", name, flag, got, want)
			}
		}
		if m, ok := sc.mountAt(stackHome); !ok || m.source != name+"-data" {
			t.Errorf("%s-sidecar: want %s-data at %s", name, name, stackHome)
		}
		a := svc(name)
		if a.NetworkMode != "service:"+name+"-sidecar" || !a.hardened() {
			t.Errorf("%s: want network_mode service:%s-sidecar, read-only, no capabilities, no-new-privileges", name, name)
		}
		if got := a.Environment["HTTPS_PROXY"]; got != "http://"+oneFlag(t, name+"-sidecar", sc.Command, "listen") {
			t.Errorf("%s HTTPS_PROXY %q is not its sidecar's --listen", name, got)
		}
		ca := a.Environment["SSL_CERT_FILE"] + a.Environment["NODE_EXTRA_CA_CERTS"]
		if m, ok := a.fileVolume(ca); !ok || m.source != name+"-ca" {
			t.Errorf("%s trusts %q, which is not its sidecar's CA (volume %s-ca)", name, ca, name)
		}
	}
	if _, err := os.Stat(filepath.Join("agents", "python", "handoff_scraper.py")); err != nil || !slices.Contains(svc("scraper").Command, "/agents/python/handoff_scraper.py") {
		t.Errorf("scraper does not run agents/python/handoff_scraper.py (%v)", err)
	}
	if !slices.Contains(svc("drafter").Volumes, "./agents/node/handoff-drafter.mjs:/agents/node/handoff-drafter.mjs:ro") {
		t.Error("drafter does not mount agents/node/handoff-drafter.mjs")
	}
	doc, err := os.ReadFile(filepath.Join("handoff", "findings.schema.json"))
	if err != nil || !slices.Contains(svc("enroll").Volumes, "./handoff/findings.schema.json:/findings.schema.json:ro") {
		t.Fatalf("enroll must mount handoff/findings.schema.json at /findings.schema.json (%v)", err)
	}
	if _, err := handoff.CompileSchema("findings/v1", doc); err != nil {
		t.Error(err)
	}
	for name, s := range f.Services {
		for _, m := range s.mounts() {
			_, here := f.Volumes[m.source]
			_, there := base.Volumes[m.source]
			if !strings.HasPrefix(m.source, ".") && !here && !there {
				t.Errorf("%s mounts undeclared volume %s", name, m.source)
			}
		}
	}
}

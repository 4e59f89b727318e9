package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/internal/fleet"
	"github.com/stackctl/stack/internal/stacktest"
	"github.com/stackctl/stack/internal/testenv"
	"go.uber.org/goleak"
)

// Host names the proxy is told to resolve to loopback (--resolve), and what
// the tests use them for.
const (
	stripeHost  = "api.stripe.com" // the credential is bound here
	evilHost    = "evil.example"   // granted, but the credential is not bound here
	rebindHost  = "rebind.test"    // resolves to 127.0.0.2, outside --allow-cidr
	placeholder = "stk_ph_stripe"
	agentID     = "billing-bot"
)

// stripeGrant is the billing agent's grant on the Stripe API.
const stripeGrant = "host=" + stripeHost + ",methods=GET|POST,paths=/v1/**,credentials=stripe"

// stackBin is the stack binary TestMain builds.
var stackBin string

func TestMain(m *testing.M) {
	// TestFleetFailover runs its etcd members as children of this binary.
	if len(os.Args) > 1 && os.Args[1] == fleet.EtcdMemberCommand {
		if err := fleet.EtcdMemberMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "etcd member:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(stacktest.BuildFirst(m, "e2e", func(ctx context.Context, dir string) (err error) {
		stackBin, err = stacktest.BuildStack(ctx, dir)
		return err
	}))
}

// seenRequest is what an upstream received.
type seenRequest struct {
	Host          string // the Host header without the port
	Method        string
	Path          string
	Authorization string
	// Raw is the request line, every header and the body, searched for
	// secrets.
	Raw string
}

// upstream is a real TLS server whose certificates are minted per SNI by
// its own CA. It records every request it receives.
type upstream struct {
	*stacktest.TLSUpstream

	mu   sync.Mutex
	seen []seenRequest

	// sseRelease lets /v1/events send its last event; the test closes it
	// once the client has the first.
	sseRelease chan struct{}

	// routes are handlers a test adds by path prefix (route), under mu.
	routes map[string]http.Handler
}

// route serves paths under prefix with h.
func (u *upstream) route(prefix string, h http.Handler) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.routes == nil {
		u.routes = map[string]http.Handler{}
	}
	u.routes[prefix] = h
}

// startUpstream starts an upstream with a new CA named after name. A
// client that sends no server name gets a certificate for stripeHost.
func startUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	u := &upstream{sseRelease: make(chan struct{})}
	u.TLSUpstream = stacktest.StartTLSUpstream(t, name+" CA", http.HandlerFunc(u.serve), func(serverName string) (string, error) {
		if serverName == "" {
			return stripeHost, nil
		}
		return serverName, nil
	})
	return u
}

// requests returns a copy of what the upstream has received.
func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	var route http.Handler
	for prefix, h := range u.routes {
		if strings.HasPrefix(r.URL.Path, prefix) {
			route = h
		}
	}
	u.mu.Unlock()
	if route != nil {
		route.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	var raw strings.Builder
	fmt.Fprintf(&raw, "%s %s %s\n", r.Method, r.URL.RequestURI(), r.Proto)
	r.Header.Write(&raw)
	raw.Write(body)
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	auth := r.Header.Get("Authorization")
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{Host: host, Method: r.Method, Path: r.URL.Path, Authorization: auth, Raw: raw.String()})
	u.mu.Unlock()

	// Echo the Authorization header in a response header and in the body,
	// as a careless API might: the proxy must turn the secret back into
	// the placeholder before the agent sees either.
	w.Header().Set("X-Echo-Authorization", auth)
	w.Header().Set("Request-Id", "req_e2e")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/balance":
		writeJSON(w, map[string]any{
			"object":   "balance",
			"livemode": false,
			"available": []any{map[string]any{
				"amount": 1000, "currency": "usd", "source_types": map[string]any{"card": 1000},
			}},
			"pending": []any{map[string]any{
				"amount": 250, "currency": "usd", "source_types": map[string]any{"card": 250},
			}},
			"echo_authorization": auth,
		})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/charges":
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		writeJSON(w, map[string]any{
			"id": "ch_e2e_1", "object": "charge", "amount": amount,
			"currency": r.PostForm.Get("currency"), "status": "succeeded",
			"paid": true, "captured": true, "livemode": false,
			"description": "authorization=" + auth,
		})
	case r.URL.Path == "/v1/compressed":
		// As most APIs do: gzip when the client accepts it.
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			writeJSON(w, map[string]any{"echo_authorization": auth, "compressed": false})
			return
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		json.NewEncoder(zw).Encode(map[string]any{"echo_authorization": auth, "compressed": true})
		zw.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		w.Write(buf.Bytes())
	case r.URL.Path == "/v1/events":
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "data: first %s\n\n", auth)
		w.(http.Flusher).Flush()
		select {
		case <-u.sseRelease:
		case <-r.Context().Done():
			return
		case <-time.After(stacktest.CommandTimeout):
			// The client never confirmed the first event: send the last
			// one anyway so the test ends and reports it.
		}
		io.WriteString(w, "data: last\n\n")
	default:
		writeJSON(w, map[string]any{"host": r.Host, "method": r.Method, "path": r.URL.Path, "authorization": auth})
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// env is one data directory with its upstream, and the proxy once started.
type env struct {
	t      *testing.T
	dir    string // scratch files
	home   string // the data directory
	caFile string // the MITM CA, as `stack ca export` prints it
	// secret is the real Stripe key stored in the vault; no client may
	// ever see it.
	secret   string
	extraEnv []string // for every stack command, e.g. STACK_PASSPORT_LEEWAY
	cli      stacktest.CLI
	up       *upstream
	proxy    *stacktest.Sidecar
	// proxyStopped is set once stopProxy has checked the current proxy.
	proxyStopped bool
}

// newEnv makes a data directory with `stack init`, stores the Stripe
// secret bound to api.stripe.com, exports the CA and starts the upstream.
func newEnv(t *testing.T, extraEnv ...string) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests start processes; skipped in -short mode")
	}
	dir := t.TempDir()
	e := &env{
		t:        t,
		dir:      dir,
		home:     filepath.Join(dir, "home"),
		caFile:   filepath.Join(dir, "ca.pem"),
		secret:   "sk_live_e2e_" + stacktest.RandomHex(t, 16),
		extraEnv: extraEnv,
	}
	e.cli = stacktest.CLI{Bin: stackBin, Home: e.home, Env: stacktest.ChildEnv(extraEnv...), Dir: dir}
	e.up = startUpstream(t, "upstream")
	e.mustStack("", "init")
	e.mustStack(e.secret, "vault", "put", "stripe", "--host", stripeHost, "--render", "bearer")
	pem := e.mustStack("", "ca", "export")
	if !strings.Contains(pem, "BEGIN CERTIFICATE") {
		t.Fatalf("stack ca export printed no certificate: %q", pem)
	}
	if err := os.WriteFile(e.caFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs a command in the scratch directory with a bounded wait; a
// non-zero exit is returned, not failed on.
func (e *env) run(stdin string, environ []string, name string, args ...string) stacktest.Result {
	e.t.Helper()
	return stacktest.Run(e.t, stacktest.Command{Name: name, Args: args, Env: environ, Dir: e.dir, Stdin: stdin})
}

// mustStack runs stack and fails the test unless it exits 0; it returns
// stdout.
func (e *env) mustStack(stdin string, args ...string) string {
	e.t.Helper()
	return e.cli.Must(e.t, stdin, args...)
}

// issue signs a passport with `stack passport issue`.
func (e *env) issue(agent, ttl string, grants ...string) string {
	e.t.Helper()
	args := []string{"passport", "issue", "--agent", agent}
	if ttl != "" {
		args = append(args, "--ttl", ttl)
	}
	for _, g := range grants {
		args = append(args, "--grant", g)
	}
	tok := strings.TrimSpace(e.mustStack("", args...))
	if strings.Count(tok, ".") != 2 {
		e.t.Fatalf("passport issue printed %q, not a compact JWS", tok)
	}
	return tok
}

// startProxy starts `stack proxy` with every test host resolved to
// loopback and only the upstream's CA trusted, then extra. It is stopped
// with stopProxy at cleanup.
func (e *env) startProxy(extra ...string) *stacktest.Sidecar {
	e.t.Helper()
	args := []string{
		"--allow-cidr", "127.0.0.1/32",
		"--resolve", stripeHost + "=127.0.0.1",
		"--resolve", evilHost + "=127.0.0.1",
		"--resolve", rebindHost + "=127.0.0.2",
		"--upstream-ca", e.up.CAFile,
	}
	e.proxy = stacktest.StartSidecar(e.t, stackBin, e.home, stacktest.ChildEnv(e.extraEnv...), append(args, extra...)...)
	e.proxyStopped = false
	e.t.Cleanup(e.stopProxy)
	return e.proxy
}

// stopProxy stops the proxy gracefully (see stacktest.Sidecar.Stop) and
// checks that its log never held the secret. It is idempotent.
func (e *env) stopProxy() {
	e.t.Helper()
	if e.proxy == nil || e.proxyStopped {
		return
	}
	e.proxyStopped = true
	e.proxy.Stop(e.t)
	if strings.Contains(e.proxy.Log(), e.secret) {
		e.t.Errorf("the proxy's log contains the secret")
	}
}

// url is an https URL on the upstream's port under host.
func (e *env) url(host, path string) string {
	return e.up.URL(host, path)
}

// httpResult is a response as a client reported it.
type httpResult struct {
	Status int
	Header http.Header
	Body   string
	// Raw is everything the client printed: headers and body.
	Raw string
}

// curl runs curl through the proxy with the passport as proxy user and
// only the exported CA trusted. args come after the fixed options. With
// -i, curl prints a refused CONNECT's response as the last header block.
func (e *env) curl(agent, token string, args ...string) httpResult {
	e.t.Helper()
	base := []string{
		"-s", "-S", "-i", "--max-time", "20",
		"--proxy", "http://" + e.proxy.Listen,
		"--proxy-user", agent + ":" + token,
		"--cacert", e.caFile,
	}
	r := e.run("", stacktest.ChildEnv(), "curl", append(base, args...)...)
	res, err := parseCurl(r.Stdout)
	if err != nil {
		e.t.Fatalf("curl (exit %d): %v\nstdout: %s\nstderr: %s", r.Code, err, r.Stdout, r.Stderr)
	}
	return res
}

// parseCurl reads curl -i output: one or more header blocks (a CONNECT's
// answer, then the response's), then the body.
func parseCurl(out string) (httpResult, error) {
	res := httpResult{Raw: out}
	rest := out
	found := false
	for strings.HasPrefix(rest, "HTTP/") {
		head, body, _ := strings.Cut(rest, "\r\n\r\n")
		lines := strings.Split(head, "\r\n")
		fields := strings.Fields(lines[0])
		if len(fields) < 2 {
			return res, fmt.Errorf("bad status line %q", lines[0])
		}
		code, err := strconv.Atoi(fields[1])
		if err != nil {
			return res, fmt.Errorf("bad status line %q", lines[0])
		}
		h := http.Header{}
		for _, l := range lines[1:] {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		res.Status, res.Header, found = code, h, true
		rest = body
	}
	if !found {
		return res, errors.New("no HTTP response in curl's output")
	}
	res.Body = rest
	return res, nil
}

// clientJSON is what client.py and client.mjs print.
type clientJSON struct {
	Status  int            `json:"status"`
	Headers map[string]any `json:"headers"`
	Body    string         `json:"body"`
}

func parseClientJSON(out string) (httpResult, error) {
	var c clientJSON
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &c); err != nil {
		return httpResult{}, err
	}
	h := http.Header{}
	for k, v := range c.Headers {
		switch v := v.(type) {
		case string:
			h.Add(k, v)
		case []any:
			for _, x := range v {
				h.Add(k, fmt.Sprint(x))
			}
		}
	}
	return httpResult{Status: c.Status, Header: h, Body: c.Body, Raw: out}, nil
}

// python sends one request with client.py (requests).
func (e *env) python(agent, token, method, target, body string) httpResult {
	e.t.Helper()
	script, _ := filepath.Abs(filepath.Join("testdata", "client.py"))
	proxyURL := (&url.URL{Scheme: "http", User: url.UserPassword(agent, token), Host: e.proxy.Listen}).String()
	environ := stacktest.ChildEnv(
		"HTTPS_PROXY="+proxyURL, "HTTP_PROXY="+proxyURL,
		"REQUESTS_CA_BUNDLE="+e.caFile, "STRIPE_API_KEY="+placeholder,
	)
	args := []string{script, method, target}
	if body != "" {
		args = append(args, body)
	}
	r := e.run("", environ, "python3", args...)
	res, err := parseClientJSON(r.Stdout)
	if r.Code != 0 || err != nil {
		e.t.Fatalf("client.py: exit %d, %v\nstdout: %s\nstderr: %s", r.Code, err, r.Stdout, r.Stderr)
	}
	return res
}

// nodeModules is where `npm install --prefix e2e/testdata` puts undici.
const nodeModules = "testdata/node_modules/undici"

// node sends one request with client.mjs (undici ProxyAgent).
func (e *env) node(agent, token, method, target, body string) httpResult {
	e.t.Helper()
	script, _ := filepath.Abs(filepath.Join("testdata", "client.mjs"))
	environ := stacktest.ChildEnv(
		"STACK_PROXY=http://"+e.proxy.Listen, "STACK_AGENT="+agent, "STACK_PASSPORT="+token,
		"STACK_CA="+e.caFile, "STRIPE_API_KEY="+placeholder,
	)
	args := []string{script, method, target}
	if body != "" {
		args = append(args, body)
	}
	r := e.run("", environ, "node", args...)
	res, err := parseClientJSON(r.Stdout)
	if r.Code != 0 || err != nil {
		e.t.Fatalf("client.mjs: exit %d, %v\nstdout: %s\nstderr: %s", r.Code, err, r.Stdout, r.Stderr)
	}
	return res
}

// needNode skips when undici is not installed, except under CI, where it
// must be.
func needNode(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(nodeModules); err != nil {
		testenv.Missing(t, "undici is not installed: run npm install --prefix e2e/testdata")
	}
	testenv.LookPath(t, "node")
}

// goClient is an HTTP client that goes through the proxy with the
// passport in the proxy URL's user info, trusting only the exported CA.
func (e *env) goClient(agent, token string) *http.Client {
	e.t.Helper()
	pem, err := os.ReadFile(e.caFile)
	if err != nil {
		e.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		e.t.Fatal("ca.pem holds no certificate")
	}
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword(agent, token), Host: e.proxy.Listen}
	tr := &http.Transport{
		Proxy:           http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: stacktest.CommandTimeout}
}

// admin sends a request to the admin listener, with the admin token when
// withToken is set.
func (e *env) admin(method, path string, body io.Reader, withToken bool) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.proxy.Admin+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if withToken {
		tok, err := os.ReadFile(filepath.Join(e.home, "admin.token"))
		if err != nil {
			e.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: stacktest.CommandTimeout, Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// auditRecords reads the log with `stack audit tail --json` (the proxy
// must have stopped, or the CLI must reach it).
func (e *env) auditRecords() ([]audit.Record, string) {
	e.t.Helper()
	out := e.mustStack("", "audit", "tail", "--json", "-n", "100000")
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			e.t.Fatalf("audit tail --json line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs, out
}

// verifyAudit runs `stack audit verify` and fails unless it exits 0.
func (e *env) verifyAudit(args ...string) string {
	e.t.Helper()
	return e.mustStack("", append([]string{"audit", "verify"}, args...)...)
}

// checkClientView fails if the client saw the secret, or did not see the
// placeholder the upstream echoed back.
func (e *env) checkClientView(t *testing.T, res httpResult) {
	t.Helper()
	if strings.Contains(res.Raw, e.secret) || strings.Contains(res.Body, e.secret) {
		t.Errorf("the client saw the real secret:\n%s", res.Raw)
	}
	for k, vs := range res.Header {
		for _, v := range vs {
			if strings.Contains(v, e.secret) {
				t.Errorf("response header %s carries the secret", k)
			}
		}
	}
	if got := res.Header.Get("X-Echo-Authorization"); got != "Bearer "+placeholder {
		t.Errorf("echoed Authorization header = %q, want the placeholder back (Bearer %s)", got, placeholder)
	}
	if !strings.Contains(res.Body, "Bearer "+placeholder) {
		t.Errorf("the body does not carry the echoed placeholder:\n%s", res.Body)
	}
}

// checkUpstreamGotSecret fails unless every request the upstream received
// from index from on carried exactly the real secret.
func (e *env) checkUpstreamGotSecret(t *testing.T, from, want int) {
	t.Helper()
	got := e.up.requests()[from:]
	if len(got) != want {
		t.Fatalf("upstream received %d requests, want %d", len(got), want)
	}
	for _, r := range got {
		if r.Host != stripeHost {
			t.Errorf("upstream request for host %q, want %s", r.Host, stripeHost)
		}
		if r.Authorization != "Bearer "+e.secret {
			t.Errorf("%s %s reached the upstream with Authorization %q, want the real secret", r.Method, r.Path, redactSecret(r.Authorization, e.secret))
		}
	}
}

// checkNoSecretElsewhere fails if the secret reached any upstream request
// not addressed to the host it is bound to.
func (e *env) checkNoSecretElsewhere(t *testing.T, ups ...*upstream) {
	t.Helper()
	for _, u := range ups {
		for _, r := range u.requests() {
			if r.Host != stripeHost && strings.Contains(r.Raw, e.secret) {
				t.Errorf("the secret reached %s (%s %s)", r.Host, r.Method, r.Path)
			}
		}
	}
}

func redactSecret(s, secret string) string { return strings.ReplaceAll(s, secret, "[SECRET]") }

// jwtExpiry reads exp from a compact JWS without verifying it.
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("passport payload has no exp: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}

// forge flips one character in the middle of the signature, leaving the
// token well-formed.
func forge(token string) string {
	i := strings.LastIndexByte(token, '.') + 10
	b := []byte(token)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

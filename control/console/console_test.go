package console

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/passport"
)

const testToken = "0123456789abcdef0123456789abcdef-operator"

// env is a real control plane (bbolt store, issuer keys) with one agent,
// and the console in front of it on loopback TLS.
type env struct {
	srv     *control.Server
	live    *Live
	console *Console
	ts      *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.New(control.Options{Store: st, Keys: keys, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	live := NewLive(nil)
	con, err := New(context.Background(), Options{Backend: srv, Live: live, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	api := srv.Handler()
	mux := http.NewServeMux()
	mux.Handle("/ui/", con)
	mux.Handle("/", api)
	ts := httptest.NewTLSServer(mux)
	t.Cleanup(ts.Close)
	e := &env{srv: srv, live: live, console: con, ts: ts}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+control.PathAgents,
		strings.NewReader(`{"name":"bot","scope":[{"hosts":["api.example.test"],"methods":["GET"]}]}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", resp.StatusCode, b)
	}
	return e
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so that each answer can be checked.
func (e *env) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := e.ts.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, header map[string]string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// signIn signs c in with the operator token and returns the session's
// CSRF token.
func (e *env) signIn(t *testing.T, c *http.Client) string {
	t.Helper()
	login := do(t, c, http.MethodGet, e.ts.URL+"/ui/login", nil, nil)
	a := do(t, c, http.MethodPost, e.ts.URL+"/ui/login", url.Values{"csrf": {csrfOf(t, login.body)}, "token": {testToken}}, map[string]string{"Origin": e.ts.URL})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != Path {
		t.Fatalf("sign-in: %d %v %s", a.status, a.header, a.body)
	}
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/", nil, nil)
	if page.status != http.StatusOK {
		t.Fatalf("overview after sign-in: %d %s", page.status, page.body)
	}
	return csrfOf(t, page.body)
}

// viewer signs c in as a viewer, as an OIDC sign-in of someone in the
// viewers list would, and returns the session's CSRF token.
func (e *env) viewer(t *testing.T, c *http.Client) string {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := e.console.startSession(rec, "vera@example.test", RoleViewer, "oidc"); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.ts.URL)
	c.Jar.SetCookies(u, rec.Result().Cookies())
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/", nil, nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="role">viewer`) {
		t.Fatalf("viewer overview: %d %s", page.status, page.body)
	}
	return csrfOf(t, page.body)
}

func (e *env) disabled(t *testing.T) bool {
	t.Helper()
	agents, err := e.srv.Agents(context.Background())
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents %v %v", agents, err)
	}
	return agents[0].Disabled
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	if a := do(t, c, http.MethodGet, e.ts.URL+"/ui/", nil, nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/login" {
		t.Fatalf("signed out overview: %d %v", a.status, a.header)
	}
	login := do(t, c, http.MethodGet, e.ts.URL+"/ui/login", nil, nil)
	nonce := csrfOf(t, login.body)
	for name, tc := range map[string]struct {
		form   url.Values
		header map[string]string
		status int
	}{
		"a wrong token":             {url.Values{"csrf": {nonce}, "token": {strings.Repeat("x", 40)}}, map[string]string{"Origin": e.ts.URL}, http.StatusUnauthorized},
		"no form nonce":             {url.Values{"token": {testToken}}, map[string]string{"Origin": e.ts.URL}, http.StatusForbidden},
		"another origin's form":     {url.Values{"csrf": {nonce}, "token": {testToken}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		"a cross-site fetch":        {url.Values{"csrf": {nonce}, "token": {testToken}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		"a nonce of another cookie": {url.Values{"csrf": {"AAAA" + nonce[4:]}, "token": {testToken}}, nil, http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			// Each refusal sets a fresh sign-in nonce: take it back to the
			// one this form carries.
			u, _ := url.Parse(e.ts.URL)
			c.Jar.SetCookies(u, []*http.Cookie{{Name: loginCookie, Value: nonce, Path: "/", Secure: true}})
			a := do(t, c, http.MethodPost, e.ts.URL+"/ui/login", tc.form, tc.header)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if e.console.session(&http.Request{Header: http.Header{"Cookie": {cookieHeader(c, e.ts.URL)}}}) != nil {
				t.Fatal("a refused sign-in started a session")
			}
		})
	}
	e.signIn(t, c)
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/", nil, nil)
	for _, want := range []string{`data-agent="bot"`, `id="role">admin`, `id="signals"`, `/ui/charts/rates.svg`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// Signing out ends the session.
	if a := do(t, c, http.MethodPost, e.ts.URL+"/ui/logout", url.Values{"csrf": {csrfOf(t, page.body)}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d %s", a.status, a.body)
	}
	if a := do(t, c, http.MethodGet, e.ts.URL+"/ui/", nil, nil); a.status != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", a.status)
	}
}

func cookieHeader(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range c.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

// Every change needs the session's CSRF token and this origin; the
// session cookie alone, which a browser attaches to a forged post, is not
// enough.
func TestChangesNeedCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	csrf := e.signIn(t, c)
	revoke := e.ts.URL + "/ui/agents/bot/revoke"
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "reason": {"test"}, "confirm": {"bot"}}
	}
	for name, tc := range map[string]struct {
		form   url.Values
		header map[string]string
	}{
		"no token":              {form(""), nil},
		"a wrong token":         {form(strings.Repeat("A", 43)), nil},
		"another origin":        {form(csrf), map[string]string{"Origin": "https://attacker.example"}},
		"a cross-site request":  {form(csrf), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"a same-site other app": {form(csrf), map[string]string{"Sec-Fetch-Site": "same-site"}},
		"plain http origin":     {form(csrf), map[string]string{"Origin": strings.Replace(e.ts.URL, "https", "http", 1)}},
	} {
		t.Run(name, func(t *testing.T) {
			a := do(t, c, http.MethodPost, revoke, tc.form, tc.header)
			if a.status != http.StatusForbidden || !strings.Contains(a.body, "CSRF") {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if e.disabled(t) {
				t.Fatal("the agent was revoked")
			}
		})
	}
	// With the token, from this origin: a missing confirmation or reason
	// is refused, then the revocation goes through.
	if a := do(t, c, http.MethodPost, revoke, url.Values{"csrf": {csrf}, "reason": {"test"}, "confirm": {"bo"}}, map[string]string{"Origin": e.ts.URL}); a.status != http.StatusBadRequest || !strings.Contains(a.body, "type the agent") {
		t.Fatalf("unconfirmed: %d %s", a.status, a.body)
	}
	if a := do(t, c, http.MethodPost, revoke, url.Values{"csrf": {csrf}, "reason": {"  "}, "confirm": {"bot"}}, nil); a.status != http.StatusBadRequest {
		t.Fatalf("no reason: %d %s", a.status, a.body)
	}
	if e.disabled(t) {
		t.Fatal("revoked without a confirmation")
	}
	a := do(t, c, http.MethodPost, revoke, form(csrf), map[string]string{"Origin": e.ts.URL, "Sec-Fetch-Site": "same-origin"})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/agents/bot?done=revoked" {
		t.Fatalf("revoke: %d %v %s", a.status, a.header, a.body)
	}
	if !e.disabled(t) {
		t.Fatal("the agent is not disabled")
	}
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/agents/bot?done=revoked", nil, nil)
	if !strings.Contains(page.body, `id="notice"`) || !strings.Contains(page.body, "revoked: test") || strings.Contains(page.body, `id="revoke-form"`) {
		t.Fatalf("agent page after revoking:\n%s", page.body)
	}
}

func TestViewerChangesNothing(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	csrf := e.viewer(t, c)
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/agents/bot", nil, nil)
	if page.status != http.StatusOK || strings.Contains(page.body, `id="revoke-form"`) || strings.Contains(page.body, `class="mode-form"`) {
		t.Fatalf("a viewer's agent page offers changes: %d\n%s", page.status, page.body)
	}
	for path, form := range map[string]url.Values{
		"/ui/agents/bot/revoke":    {"csrf": {csrf}, "reason": {"test"}, "confirm": {"bot"}},
		"/ui/agents/bot/detectors": {"csrf": {csrf}, "detector": {"scope_drift"}, "mode": {"block"}, "override": {"yes"}},
	} {
		a := do(t, c, http.MethodPost, e.ts.URL+path, form, map[string]string{"Origin": e.ts.URL})
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "viewer") {
			t.Errorf("%s: %d %s", path, a.status, a.body)
		}
	}
	if e.disabled(t) {
		t.Fatal("a viewer revoked the agent")
	}
	modes, err := e.srv.DetectorModes(context.Background(), "bot")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range modes.Detectors {
		if d.Override {
			t.Fatalf("a viewer changed a mode: %+v", d)
		}
	}
}

// A session cookie changed in any way, expired, or made for another
// purpose signs nobody in.
func TestSessionCookie(t *testing.T) {
	e := newEnv(t)
	k := e.console.sealer
	good := session{V: 1, User: "vera", Role: RoleViewer, Expires: time.Now().Add(time.Hour).Unix(), CSRF: "x"}
	seal := func(purpose string, s session) string {
		v, err := k.seal(purpose, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	valid := seal(sessionCookie, good)
	body, sig, _ := strings.Cut(valid, ".")
	promoted := good
	promoted.Role = RoleAdmin
	pb, _, _ := strings.Cut(seal(sessionCookie, promoted), ".")
	expired := good
	expired.Expires = time.Now().Add(-time.Second).Unix()
	other := sealer{key: deriveKey(strings.Repeat("z", 40))}
	otherCookie, _ := other.seal(sessionCookie, good)
	for name, tc := range map[string]struct {
		value string
		ok    bool
	}{
		"valid":                       {valid, true},
		"promoted to admin":           {pb + "." + sig, false},
		"signature cut":               {body, false},
		"signature of another body":   {body + "x." + sig, false},
		"expired":                     {seal(sessionCookie, expired), false},
		"an OIDC flow cookie":         {seal(oidcCookie, good), false},
		"signed by another token":     {otherCookie, false},
		"not base64":                  {"!!!.???", false},
		"empty":                       {"", false},
		"a role the console lacks":    {seal(sessionCookie, session{V: 1, Role: "root", Expires: good.Expires}), false},
		"a future format of sessions": {seal(sessionCookie, session{V: 2, Role: RoleAdmin, Expires: good.Expires}), false},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ui/", nil)
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: tc.value})
			if got := e.console.session(r) != nil; got != tc.ok {
				t.Fatalf("signed in %v, want %v", got, tc.ok)
			}
		})
	}
}

// Every answer, page, asset, refusal or stream, carries the security
// headers.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	e.signIn(t, c)
	for _, path := range []string{"/ui/", "/ui/login", "/ui/agents/bot", "/ui/agents/nobody", "/ui/static/console.js", "/ui/static/console.css", "/ui/charts/rates.svg", "/ui/nothing-here"} {
		a := do(t, c, http.MethodGet, e.ts.URL+path, nil, nil)
		if a.header.Get("Content-Security-Policy") != contentSecurityPolicy || a.header.Get("X-Frame-Options") != "DENY" ||
			a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, headers %v", path, a.status, a.header)
		}
	}
	// The session cookie is Secure, HttpOnly and SameSite=Strict.
	login := do(t, e.browser(t), http.MethodGet, e.ts.URL+"/ui/login", nil, nil)
	set := login.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(set, want) {
			t.Errorf("sign-in cookie %q lacks %s", set, want)
		}
	}
	// No page carries inline script or style, which the policy would block.
	for _, path := range []string{"/ui/", "/ui/login", "/ui/agents/bot"} {
		page := do(t, c, http.MethodGet, e.ts.URL+path, nil, nil).body
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]|style=|<style|\son[a-z]+="`).MatchString(page) {
			t.Errorf("%s has inline script or style", path)
		}
	}
}

// The rollout gate: a detector in alert mode that has not been clean for
// the gate's length goes to block only when the operator overrides it.
func TestRolloutGate(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	csrf := e.signIn(t, c)
	set := e.ts.URL + "/ui/agents/bot/detectors"
	a := do(t, c, http.MethodPost, set, url.Values{"csrf": {csrf}, "detector": {"credential_burst"}, "mode": {"block"}}, nil)
	if a.status != http.StatusConflict || !strings.Contains(a.body, "rollout gate is not met") {
		t.Fatalf("block before the gate: %d %s", a.status, a.body)
	}
	for name, form := range map[string]url.Values{
		"an unknown detector": {"detector": {"nope"}, "mode": {"alert"}},
		"an unknown mode":     {"detector": {"scope_drift"}, "mode": {"loud"}},
	} {
		form.Set("csrf", csrf)
		if a := do(t, c, http.MethodPost, set, form, nil); a.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	a = do(t, c, http.MethodPost, set, url.Values{"csrf": {csrf}, "detector": {"credential_burst"}, "mode": {"block"}, "override": {"yes"}, "reason": {"known bad"}}, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("block with the override: %d %s", a.status, a.body)
	}
	page := do(t, c, http.MethodGet, e.ts.URL+"/ui/agents/bot?done=mode", nil, nil).body
	if !strings.Contains(page, `id="detector-credential_burst" data-mode="block"`) || !strings.Contains(page, "known bad") {
		t.Fatalf("agent page after the change:\n%s", page)
	}
	modes, err := e.srv.DetectorModes(context.Background(), "bot")
	if err != nil || modes.Detectors[0].Detector != "credential_burst" || modes.Detectors[0].Mode != "block" || !strings.Contains(modes.Detectors[0].By, "operator token") {
		t.Fatalf("modes %+v %v", modes, err)
	}
}

func signalItem(agent, detector string, at time.Time) fleet.Item {
	return fleet.Item{Agent: agent, Sidecar: "sc-1", Record: audit.Record{
		EventID: "ev-" + detector + at.Format("150405.000"), TimestampMS: at.UnixMilli(), AgentID: agent,
		Action: audit.ActionDetectorFired, Detector: detector, Severity: "high", Host: "evil.example.test",
	}}
}

func TestLive(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 30, 0, 0, time.UTC)
	l := NewLive(func() time.Time { return now })
	all, bots := l.subscribe(""), l.subscribe("bot")
	defer l.unsubscribe(all)
	defer l.unsubscribe(bots)
	req := fleet.Item{Agent: "bot", Record: audit.Record{Action: audit.ActionRequest, AgentID: "bot", TimestampMS: now.UnixMilli()}}
	denied := fleet.Item{Agent: "bot", Record: audit.Record{Action: audit.ActionRequestDenied, AgentID: "bot", TimestampMS: now.Add(-time.Minute).UnixMilli()}}
	old := fleet.Item{Agent: "bot", Record: audit.Record{Action: audit.ActionRequest, AgentID: "bot", TimestampMS: now.Add(-2 * time.Hour).UnixMilli()}}
	l.Observe([]fleet.Item{req, denied, old, signalItem("bot", "scope_drift", now), signalItem("other", "prompt_injection", now)})
	if s := <-all.ch; s.Agent != "bot" || s.Detector != "scope_drift" {
		t.Fatalf("first signal %+v", s)
	}
	if s := <-all.ch; s.Agent != "other" {
		t.Fatalf("second signal %+v", s)
	}
	if s := <-bots.ch; s.Agent != "bot" || len(bots.ch) != 0 {
		t.Fatalf("bot's stream %+v, %d more", s, len(bots.ch))
	}
	rates := l.Rates("")
	if len(rates) != rateMinutes || rates[rateMinutes-1].Requests != 1 || rates[rateMinutes-2].Requests != 1 || rates[rateMinutes-1].Signals != 2 {
		t.Fatalf("fleet rates end %+v", rates[rateMinutes-3:])
	}
	if r := l.Rates("other"); r[rateMinutes-1].Signals != 1 || r[rateMinutes-1].Requests != 0 {
		t.Fatalf("other's rates %+v", r[rateMinutes-1])
	}
	// A stream that falls behind misses signals and is told how many;
	// Observe never waits for it.
	items := make([]fleet.Item, subscriberBuffer+7)
	for i := range items {
		items[i] = signalItem("bot", "scope_drift", now.Add(time.Duration(i)*time.Millisecond))
	}
	l.Observe(items)
	if n := l.takeDropped(bots); n != 7 {
		t.Fatalf("dropped %d, want 7", n)
	}
	// 59 minutes on, the minute before leaves the chart.
	now = now.Add(59 * time.Minute)
	total := 0
	for _, r := range l.Rates("") {
		total += r.Requests
	}
	if r := l.Rates(""); !r[0].Minute.Equal(now.Add(-59*time.Minute)) || r[0].Requests != 1 || total != 1 {
		t.Fatalf("59 minutes on: %+v, %d requests", r[:2], total)
	}
}

// The stream sends a signal the moment the fleet log commits it.
func TestEventsStream(t *testing.T) {
	e := newEnv(t)
	c := e.browser(t)
	e.signIn(t, c)
	c.Timeout = 10 * time.Second
	resp, err := c.Get(e.ts.URL + "/ui/events?agent=bot")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf) // the greeting
	if !bytes.Contains(buf[:n], []byte(": connected")) {
		t.Fatalf("greeting %q", buf[:n])
	}
	e.live.Observe([]fleet.Item{signalItem("other", "scope_drift", time.Now()), signalItem("bot", "credential_burst", time.Now())})
	var got []byte
	for !bytes.Contains(got, []byte("\n\n")) {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("reading the stream: %v (%q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Contains(got, []byte("event: signal\n")) || !bytes.Contains(got, []byte(`"detector":"credential_burst"`)) || bytes.Contains(got, []byte(`"agent":"other"`)) {
		t.Fatalf("stream sent %q", got)
	}
	// Signed out, the stream is refused.
	if a := do(t, e.browser(t), http.MethodGet, e.ts.URL+"/ui/events", nil, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("signed-out stream: %d", a.status)
	}
}

func TestRatesChartIsValidSVG(t *testing.T) {
	now := time.Now()
	l := NewLive(nil)
	l.Observe([]fleet.Item{signalItem("bot", "scope_drift", now), {Record: audit.Record{Action: audit.ActionRequest, AgentID: "bot", TimestampMS: now.UnixMilli()}}})
	for _, rates := range [][]Rate{l.Rates(""), l.Rates("nobody"), nil} {
		var b bytes.Buffer
		if err := writeRatesChart(&b, rates); err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(&b)
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("not XML: %v\n%s", err, b.String())
			}
		}
	}
}

// No cookie value but one the console sealed opens as a session, and none
// makes it panic.
func FuzzSessionCookie(f *testing.F) {
	k := sealer{key: deriveKey(testToken)}
	valid, _ := k.seal(sessionCookie, session{V: 1, User: "a", Role: RoleAdmin, Expires: 1 << 40, CSRF: "c"})
	f.Add(valid)
	f.Add("")
	f.Add(".")
	f.Add("e30.")
	body, _, _ := strings.Cut(valid, ".")
	f.Add(body + ".AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		c := &Console{sealer: k, now: time.Now}
		// Only the value sealed above carries a valid signature; another
		// string opening would be a forgery or a second spelling of it.
		if s := c.openSession(v); s != nil && v != valid {
			t.Fatalf("%q opened as a session %+v", v, s)
		}
	})
}

package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
)

// page is what every template gets.
type page struct {
	Title   string
	Session *session
	// CSRF is the token forms carry (the session's, or the sign-in
	// form's nonce).
	CSRF   string
	Error  string
	Notice string
	Data   any
}

var funcs = template.FuncMap{
	"ago":      func(t time.Time) string { return human(time.Since(t)) + " ago" },
	"until":    until,
	"human":    func(d control.Duration) string { return human(time.Duration(d)) },
	"hours":    func(d control.Duration) string { return strconv.Itoa(int(time.Duration(d).Hours())) },
	"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"ms":       func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") },
	"pathesc":  url.PathEscape,
	"queryesc": url.QueryEscape,
}

// human writes a duration as people read it: 31h, 12m, 40s.
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 72*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func until(t time.Time) string {
	if t.IsZero() {
		return "none live"
	}
	if d := time.Until(t); d > 0 {
		return "in " + human(d)
	}
	return "expired " + human(time.Since(t)) + " ago"
}

func (c *Console) parseTemplates() error {
	c.pages = map[string]*template.Template{}
	for _, name := range []string{"login", "overview", "agent", "error"} {
		t, err := template.New("base.html").Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, "base", p); err != nil {
		c.log.Error("console: rendering a page", zap.String("page", name), zap.Error(err))
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (c *Console) renderError(w http.ResponseWriter, _ *http.Request, s *session, status int, msg string) {
	p := page{Title: http.StatusText(status), Session: s, Error: msg}
	if s != nil {
		p.CSRF = s.CSRF
	}
	c.render(w, status, "error", p)
}

// backendError shows what the control plane said of a failed call.
func (c *Console) backendError(w http.ResponseWriter, r *http.Request, err error) {
	status, _, msg := control.ErrorStatus(err)
	if status >= 500 {
		c.log.Error("console: control plane call failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
	c.renderError(w, r, sessionOf(r), status, msg)
}

// agentRow is one agent on the overview.
type agentRow struct {
	control.Agent
	Expires  time.Time
	Sidecars int
	Signals  int // in the last hour
	Requests int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	b := c.opts.Backend
	agents, err := b.Agents(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	st, err := b.Status(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	exp, err := b.PassportExpiries(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	sidecars := map[string]int{}
	for _, sc := range st.Sidecars {
		sidecars[sc.Agent]++
	}
	rows := make([]agentRow, 0, len(agents))
	for _, a := range agents {
		row := agentRow{Agent: a, Expires: exp[a.Name], Sidecars: sidecars[a.Name]}
		for _, m := range c.opts.Live.Rates(a.Name) {
			row.Signals += m.Signals
			row.Requests += m.Requests
		}
		rows = append(rows, row)
	}
	s := sessionOf(r)
	c.render(w, http.StatusOK, "overview", page{Title: "Fleet", Session: s, CSRF: s.CSRF, Data: map[string]any{
		"Agents": rows, "Status": st,
	}})
}

// timelineFilter is what the agent page's filter form asks for.
type timelineFilter struct {
	Action   string
	Detector string
	Since    string // a window: 1h, 6h, 24h, 7d, 30d
	Limit    int
}

var sinceWindows = map[string]time.Duration{
	"15m": 15 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour,
	"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
}

// timelineActions are the actions the filter offers.
var timelineActions = []string{
	audit.ActionRequest, audit.ActionRequestDenied, audit.ActionCredentialAccess, audit.ActionDetectorFired,
	audit.ActionPassportRevoked, audit.ActionPassportIssued,
}

const maxTimeline = 500

func parseFilter(q url.Values) (timelineFilter, error) {
	f := timelineFilter{Action: q.Get("action"), Detector: q.Get("detector"), Since: q.Get("since"), Limit: 100}
	if f.Since == "" {
		f.Since = "24h"
	}
	if _, ok := sinceWindows[f.Since]; !ok {
		return f, fmt.Errorf("since %q: one of 15m, 1h, 6h, 24h, 7d, 30d", f.Since)
	}
	if f.Action != "" && !slices.Contains(timelineActions, f.Action) {
		return f, fmt.Errorf("action %q: not one the timeline shows", f.Action)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTimeline {
			return f, fmt.Errorf("limit %q: a number from 1 to %d", v, maxTimeline)
		}
		f.Limit = n
	}
	return f, nil
}

func (f timelineFilter) match(r *audit.Record) bool {
	return (f.Action == "" || r.Action == f.Action) && (f.Detector == "" || r.Detector == f.Detector)
}

// timeline returns the newest records of agent the filter selects, newest
// first. It reads the fleet log window by window backwards from now, so a
// busy agent's page costs the records of the last minutes, not of the
// whole window.
func (c *Console) timeline(r *http.Request, agent string, f timelineFilter) ([]audit.Record, error) {
	now := c.now()
	limit := now.Add(-sinceWindows[f.Since])
	var out []audit.Record        // newest first
	until := now.Add(time.Minute) // records stamped by a clock slightly ahead
	for _, back := range []time.Duration{5 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
		since := now.Add(-back)
		if since.Before(limit) {
			since = limit
		}
		var chunk []audit.Record
		err := c.opts.Backend.FleetRecords(r.Context(), fleet.Query{Agent: agent, Since: since, Until: until}, func(it fleet.Item) error {
			if f.match(&it.Record) {
				chunk = append(chunk, it.Record)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for i := len(chunk) - 1; i >= 0 && len(out) < f.Limit; i-- {
			out = append(out, chunk[i])
		}
		if len(out) >= f.Limit || !since.After(limit) {
			break
		}
		until = since
	}
	return out, nil
}

func (c *Console) agentPage(w http.ResponseWriter, r *http.Request) {
	c.showAgent(w, r, http.StatusOK, "", r.URL.Query().Get("done"))
}

// notices are the messages a change redirects back with.
var notices = map[string]string{
	"revoked": "Revoked: every passport of this agent is refused from its sidecars' next request.",
	"mode":    "Detector mode changed: the agent's sidecars apply it within a second.",
}

func (c *Console) showAgent(w http.ResponseWriter, r *http.Request, status int, errMsg, done string) {
	ctx := r.Context()
	name := r.PathValue("name")
	if !control.ValidAgentName(name) {
		c.renderError(w, r, sessionOf(r), http.StatusNotFound, "No agent of that name.")
		return
	}
	agents, err := c.opts.Backend.Agents(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	i := slices.IndexFunc(agents, func(a control.Agent) bool { return a.Name == name })
	if i < 0 {
		c.renderError(w, r, sessionOf(r), http.StatusNotFound, fmt.Sprintf("No agent %q is registered.", name))
		return
	}
	exp, err := c.opts.Backend.PassportExpiries(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	modes, err := c.opts.Backend.DetectorModes(ctx, name)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	st, err := c.opts.Backend.Status(ctx)
	if err != nil {
		c.backendError(w, r, err)
		return
	}
	var sidecars []control.SidecarStatus
	for _, sc := range st.Sidecars {
		if sc.Agent == name {
			sidecars = append(sidecars, sc)
		}
	}
	f, ferr := parseFilter(r.URL.Query())
	var recs []audit.Record
	var timelineErr string
	if ferr != nil {
		timelineErr = ferr.Error()
		status = http.StatusBadRequest
	} else if recs, err = c.timeline(r, name, f); err != nil {
		_, _, timelineErr = control.ErrorStatus(err)
	}
	s := sessionOf(r)
	c.render(w, status, "agent", page{
		Title: name, Session: s, CSRF: s.CSRF, Error: errMsg, Notice: notices[done],
		Data: map[string]any{
			"Agent": agents[i], "Expires": exp[name], "Modes": modes, "Sidecars": sidecars,
			"Filter": f, "Actions": timelineActions, "Windows": []string{"15m", "1h", "6h", "24h", "7d", "30d"},
			"Records": recs, "TimelineError": timelineErr, "ModeChoices": modeChoices,
		},
	})
}

// modeChoices are the modes the console offers; "default" gives the
// detector back to the sidecar's configuration.
var modeChoices = []string{"default", "off", "shadow", "alert", "block", "revoke"}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	switch {
	case reason == "":
		c.showAgent(w, r, http.StatusBadRequest, "Say why you revoke this agent: the reason goes into the audit log.", "")
		return
	case r.PostFormValue("confirm") != name:
		c.showAgent(w, r, http.StatusBadRequest, fmt.Sprintf("To revoke, type the agent's name (%s) in the confirmation box.", name), "")
		return
	case len(reason) > 512:
		c.showAgent(w, r, http.StatusBadRequest, "The reason is longer than 512 characters.", "")
		return
	}
	if err := c.record(r, "revoke_agent", fmt.Sprintf("agent=%s reason=%q", name, reason)); err != nil {
		c.backendError(w, r, err)
		return
	}
	s := sessionOf(r)
	if _, err := c.opts.Backend.RevokeAgent(r.Context(), name, reason, "console user "+s.User); err != nil {
		c.backendError(w, r, err)
		return
	}
	c.log.Info("console: agent revoked", zap.String("agent", name), zap.String("user", s.User), zap.String("reason", reason))
	http.Redirect(w, r, "/ui/agents/"+url.PathEscape(name)+"?done=revoked", http.StatusSeeOther)
}

func (c *Console) setMode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	det, mode := r.PostFormValue("detector"), r.PostFormValue("mode")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if len(reason) > 512 {
		c.showAgent(w, r, http.StatusBadRequest, "The reason is longer than 512 characters.", "")
		return
	}
	if !slices.Contains(modeChoices, mode) {
		c.showAgent(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not a detector mode.", mode), "")
		return
	}
	if control.GateStandsBefore(mode) {
		cur, err := c.opts.Backend.DetectorModes(r.Context(), name)
		if err != nil {
			c.backendError(w, r, err)
			return
		}
		i := slices.IndexFunc(cur.Detectors, func(d control.DetectorState) bool { return d.Detector == det })
		if i >= 0 && !cur.Detectors[i].GateMet && !control.GateStandsBefore(cur.Detectors[i].Mode) && r.PostFormValue("override") != "yes" {
			d := cur.Detectors[i]
			c.showAgent(w, r, http.StatusConflict, fmt.Sprintf(
				"The rollout gate is not met: %s has been clean for %s of %s in alert mode. Tick “override the gate” to switch it to %s anyway.",
				det, human(time.Duration(d.CleanFor)), human(time.Duration(cur.Gate)), mode), "")
			return
		}
	}
	if err := c.record(r, "set_detector_mode", fmt.Sprintf("agent=%s detector=%s mode=%s override=%v reason=%q", name, det, mode, r.PostFormValue("override") == "yes", reason)); err != nil {
		c.backendError(w, r, err)
		return
	}
	s := sessionOf(r)
	if _, err := c.opts.Backend.SetDetectorMode(r.Context(), name, det, mode, "console user "+s.User, reason); err != nil {
		status, _, msg := control.ErrorStatus(err)
		if status >= 500 {
			c.backendError(w, r, err)
			return
		}
		c.showAgent(w, r, status, msg, "")
		return
	}
	c.log.Info("console: detector mode set", zap.String("agent", name), zap.String("detector", det), zap.String("mode", mode), zap.String("user", s.User))
	http.Redirect(w, r, "/ui/agents/"+url.PathEscape(name)+"?done=mode", http.StatusSeeOther)
}

// streamHeartbeat keeps proxies from closing an idle stream and notices a
// session that has ended.
const streamHeartbeat = 15 * time.Second

// events streams signals as server-sent events: "signal" with a Signal,
// "dropped" with how many were missed when the browser fell behind.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	agent := r.URL.Query().Get("agent")
	if agent != "" && !control.ValidAgentName(agent) {
		http.Error(w, "agent: not an agent name", http.StatusBadRequest)
		return
	}
	s := sessionOf(r)
	sub := c.opts.Live.subscribe(agent)
	defer c.opts.Live.unsubscribe(sub)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	hb := time.NewTicker(streamHeartbeat)
	defer hb.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-hb.C:
			if !c.now().Before(time.Unix(s.Expires, 0)) {
				fmt.Fprint(w, "event: signed-out\ndata: {}\n\n")
				rc.Flush()
				return
			}
			if n := c.opts.Live.takeDropped(sub); n > 0 {
				_, err = fmt.Fprintf(w, "event: dropped\ndata: %d\n\n", n)
			} else {
				_, err = fmt.Fprint(w, ": ping\n\n")
			}
		case sig := <-sub.ch:
			b, _ := json.Marshal(sig)
			_, err = fmt.Fprintf(w, "id: %s\nevent: signal\ndata: %s\n\n", sig.EventID, b)
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

func (c *Console) chart(w http.ResponseWriter, r *http.Request) {
	agent := r.URL.Query().Get("agent")
	if agent != "" && !control.ValidAgentName(agent) {
		http.Error(w, "agent: not an agent name", http.StatusBadRequest)
		return
	}
	var b bytes.Buffer
	if err := writeRatesChart(&b, c.opts.Live.Rates(agent)); err != nil {
		c.log.Error("console: drawing a chart", zap.Error(err))
		http.Error(w, "chart unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(b.Bytes())
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/fleet"
	"github.com/stackctl/stack/mcpserver"
)

// mcpRunFile says where `stack mcp --listen` serves; removed on exit.
const mcpRunFile = "mcp.json"

func newMCPCmd(a *app) *cobra.Command {
	var listen string
	var agent bool
	cmd := &cobra.Command{
		Use:   "mcp [--listen ADDR | --agent]",
		Short: "Serve the operator tools, or an agent's own, to MCP clients",
		Long: `Serve STACK's operator tools over the Model Context Protocol, for an
assistant or an MCP client an operator uses:

  list_agents        the agents, whether disabled, passport lifetime and mode
  agent_timeline     an agent's newest records from the fleet audit log, and
                     its detector modes
  revoke_agent       revoke an agent (a reason is required)
  set_detector_mode  set one detector's mode for one agent, as stack agent
                     detectors --set does (a reason is required)
  scan_text          scan a text as stack detect scan does

The tools act on the control plane (control.url, or the one running with
this data directory) with its operator token (control.token_file), as the
CLI's fleet commands do. Every call is first recorded in the control
plane's audit log (operator_call); a call that cannot be recorded is
refused.

By default the server speaks on standard input and output, for an MCP
client that starts it. With --listen it serves streamable HTTP at /mcp,
to requests that send the operator token as Authorization: Bearer, on a
loopback address only (put TLS in front for clients elsewhere).

With --agent it serves instead an agent's own tools, on stdio, to the
agent runtime that starts it beside the agent:

  my_passport      what the agent's passport allows
  hand_off         hand a JSON payload to another agent
  handoff_inbox    the handoffs waiting for the agent
  fetch_handoff    take one, once, verified

Each is a request to the agent's sidecar through HTTPS_PROXY (trusting the
CA in SSL_CERT_FILE), under the agent's own passport: it needs no token or
key, and the sidecar checks and audits every call (docs/handoffs.md).`,
		Example: `  # An MCP client's configuration: {"command": "stack", "args": ["mcp"]}
  stack mcp
  stack mcp --listen 127.0.0.1:8765
  HTTPS_PROXY=http://127.0.0.1:8080 SSL_CERT_FILE=/etc/stack-ca/ca.pem stack mcp --agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if agent {
				if listen != "" {
					return usageError(errors.New("mcp: --agent serves on stdio only, to the runtime beside the agent"))
				}
				tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second}
				defer tr.CloseIdleConnections()
				return a.serveMCPStdio(ctx, mcpserver.NewAgent(mcpserver.AgentOptions{Sidecar: &http.Client{Transport: tr, Timeout: time.Minute}}))
			}
			c, err := a.controlAPI(ctx, true)
			if err != nil {
				return usageError(err)
			}
			srv := mcpserver.New(mcpserver.Options{Operator: &mcpOperator{a: a, c: c}, Scan: mcpScan})
			if listen == "" {
				return a.serveMCPStdio(ctx, srv)
			}
			return a.serveMCP(ctx, srv, listen, c.token)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "serve streamable HTTP on this address instead of stdio")
	cmd.Flags().BoolVar(&agent, "agent", false, "serve the agent's own tools through its sidecar (HTTPS_PROXY) instead of the operator's")
	return cmd
}

// serveMCPStdio serves srv on the command's standard input and output
// until the client goes away.
func (a *app) serveMCPStdio(ctx context.Context, srv *mcp.Server) error {
	err := srv.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(a.stdin), Writer: nopWriteCloser{a.stdout}})
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil // the client went away, or SIGINT
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// serveMCP serves srv over streamable HTTP at /mcp until ctx ends.
func (a *app) serveMCP(ctx context.Context, srv *mcp.Server, listen, token string) error {
	// The operator token crosses this listener in clear: loopback only,
	// with TLS (a proxy of your own) in front for anything further.
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return usageError(fmt.Errorf("mcp --listen %s: serve on a loopback address (127.0.0.1:PORT) and put TLS in front for clients elsewhere: the operator token travels in each request", listen))
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return usageError(fmt.Errorf("mcp --listen %s: %w", listen, err))
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpserver.Handler(srv, token))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	u := "http://" + ln.Addr().String() + "/mcp"
	defer a.writeRunFile(mcpRunFile, struct {
		PID int    `json:"pid"`
		URL string `json:"url"`
	}{os.Getpid(), u})()
	a.log.Info("serving the MCP operator tools", zap.String("url", u))
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// mcpOperator is the control plane's operator API, for the MCP tools.
type mcpOperator struct {
	a *app
	c *adminClient
}

func (o *mcpOperator) Agents(ctx context.Context) ([]control.Agent, error) {
	var agents []control.Agent
	err := o.c.do(ctx, http.MethodGet, control.PathAgents, nil, &agents)
	return agents, err
}

func (o *mcpOperator) Timeline(ctx context.Context, agent string, limit int) ([]audit.Record, error) {
	// The export is oldest first: keep the newest limit.
	var recs []audit.Record
	err := o.a.fleetRecords(ctx, audit.Filter{AgentID: agent}, func(it fleet.Item) error {
		recs = append(recs, it.Record)
		if len(recs) > 2*limit {
			recs = append(recs[:0], recs[len(recs)-limit:]...)
		}
		return nil
	})
	if len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return recs, err
}

func (o *mcpOperator) Revoke(ctx context.Context, agent, reason string) error {
	return o.c.do(ctx, http.MethodPost, control.PathRevoke, control.RevokeRequest{Agent: agent, Reason: reason}, nil)
}

func (o *mcpOperator) DetectorModes(ctx context.Context, agent string) (control.AgentDetectors, error) {
	var ad control.AgentDetectors
	err := o.c.do(ctx, http.MethodGet, control.DetectorsPath(agent), nil, &ad)
	return ad, err
}

func (o *mcpOperator) SetDetectorMode(ctx context.Context, agent, detector, mode, reason string) (control.AgentDetectors, error) {
	var ad control.AgentDetectors
	err := o.c.do(ctx, http.MethodPost, control.DetectorsPath(agent), control.DetectorModeRequest{Detector: detector, Mode: mode, Reason: reason}, &ad)
	return ad, err
}

func (o *mcpOperator) Record(ctx context.Context, call control.OperatorCall) error {
	return o.c.do(ctx, http.MethodPost, control.PathOperatorCall, call, nil)
}

// mcpScan is scan_text: stack detect scan's verdict, the signals as
// lines.
func mcpScan(text string) (mcpserver.Verdict, error) {
	v, err := scanContent([]byte(text), 0)
	if err != nil {
		return mcpserver.Verdict{}, err
	}
	out := mcpserver.Verdict{Flagged: v.Flagged, Score: v.Score}
	for _, s := range v.Signals {
		out.Signals = append(out.Signals, fmt.Sprintf("%s %s: %s", s.Detector, s.Severity, s.Evidence))
	}
	return out, nil
}

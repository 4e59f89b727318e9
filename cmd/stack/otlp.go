package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpproxy"

	"github.com/stackctl/stack/audit/otlp"
	"github.com/stackctl/stack/control/fleet"
)

// otlpCursor names the exporter's place in the fleet log's index.
const otlpCursor = "otlp"

// startOTLP exports the fleet log's records to control.otlp.endpoint, at
// least once and in log order, from where the last run stopped, until the
// command ends.
func (a *app) startOTLP(ctx context.Context, fp *fleetParts, reg prometheus.Registerer) error {
	cfg := a.cfg.Control.OTLP
	if cfg.Endpoint == "" || fp == nil {
		return nil
	}
	roots, err := withPEM(systemRoots(), "control.otlp.ca", cfg.CA)
	if err != nil {
		return err
	}
	headers, err := otlpHeaders(os.Getenv("OTEL_EXPORTER_OTLP_HEADERS"))
	if err != nil {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %w", err)
	}
	for k, v := range cfg.Headers {
		headers[k] = v
	}
	host, _ := os.Hostname()
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	log := a.log.Named("otlp")
	exp, err := otlp.New(otlp.Options{
		Endpoint: cfg.Endpoint, Headers: headers, RootCAs: roots, Gzip: cfg.Gzip, Log: log,
		Proxy:    func(r *http.Request) (*url.URL, error) { return proxy(r.URL) },
		Resource: map[string]string{"service.instance.id": host},
	})
	if err != nil {
		return usageError(fmt.Errorf("control.otlp: %w", err))
	}
	exported := prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_otlp_exported_records_total",
		Help: "Fleet audit records the OTLP receiver accepted."})
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_otlp_failures_total",
		Help: "Failed exports to the OTLP receiver (each retried from the same records)."})
	rejected := prometheus.NewCounter(prometheus.CounterOpts{Name: "stack_control_otlp_rejected_records_total",
		Help: "Fleet audit records the OTLP receiver answered it would not keep (partial success); not sent again."})
	reg.MustRegister(exported, failures, rejected)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := fp.witness.Follow(ctx, fleet.FollowOptions{
			Cursor: otlpCursor,
			Send: func(ctx context.Context, items []fleet.Item) error {
				entries := make([]otlp.Entry, len(items))
				for i, it := range items {
					entries[i] = otlp.Entry{Record: it.Record, Agent: it.Agent, Sidecar: it.Sidecar, Log: it.Log, FleetIndex: it.Index, FleetPosition: it.Position}
				}
				err := exp.Export(ctx, entries)
				var partial *otlp.PartialError
				if errors.As(err, &partial) {
					// The receiver took the rest and will not take these
					// if sent again: say so and go on.
					rejected.Add(float64(partial.Rejected))
					exported.Add(float64(len(entries) - int(partial.Rejected)))
					log.Warn("the OTLP receiver rejected records", zap.Error(err))
					return nil
				}
				if err != nil {
					return err
				}
				exported.Add(float64(len(entries)))
				return nil
			},
			OnError: func(err error) {
				failures.Inc()
				log.Warn("exporting the fleet audit log failed; retrying from the same records", zap.String("endpoint", cfg.Endpoint), zap.Error(err))
			},
		})
		if err != nil {
			log.Error("the OTLP export stopped", zap.Error(err))
		}
	}()
	a.onClose(func() error { cancel(); <-done; return exp.Close() })
	log.Info("exporting the fleet audit log as OpenTelemetry logs", zap.String("endpoint", cfg.Endpoint))
	return nil
}

// otlpHeaders reads OTEL_EXPORTER_OTLP_HEADERS: key=value pairs separated
// by commas, values percent-encoded, as the OpenTelemetry specification
// has it.
func otlpHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			// Not quoted: the value may be a key.
			return nil, fmt.Errorf("entry %d is not key=value", i+1)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s: %w", k, err)
		}
		out[k] = dv
	}
	return out, nil
}

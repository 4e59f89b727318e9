package control

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stackctl/stack/control/fleet"
)

// PassportExpiries returns, by agent, when the newest passport the
// control plane issued to it expires, for the passports it still keeps
// (an agent absent has none live).
func (s *Server) PassportExpiries(ctx context.Context) (map[string]time.Time, error) {
	kvs, _, err := s.store.List(ctx, prefixIssued)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, kv := range kvs {
		var is issued
		if json.Unmarshal(kv.Value, &is) != nil || is.Agent == "" {
			continue
		}
		// The record keeps the passport past its expiry by the leeway.
		exp := is.ExpiresAt.Add(-s.opts.Leeway)
		if exp.After(out[is.Agent]) {
			out[is.Agent] = exp
		}
	}
	return out, nil
}

// FleetRecords calls fn with the fleet audit log's records q selects, in
// time order (fleet.Witness.Export); it fails when this control plane
// does not serve the fleet log.
func (s *Server) FleetRecords(ctx context.Context, q fleet.Query, fn func(fleet.Item) error) error {
	if err := s.fleetServed(); err != nil {
		return err
	}
	return s.opts.Fleet.Export(ctx, q, fn)
}

// ErrorStatus is how the API answers err: its HTTP status, machine
// reason and message, for front ends that call the Server directly.
func ErrorStatus(err error) (status int, reason, msg string) {
	e := asAPIError(err)
	return e.status, e.reason, e.msg
}

// Package desk is an agent's handoff desk at its sidecar: it sends the
// agent's handoffs and receives the ones for it, talking to the control
// plane's drop-off.
//
// # Basics
//
// Send checks that the agent's passport grants the handoff (recipient and
// schema) and confirms the signing key this sidecar holds, validates the
// payload against its schema, seals it (package handoff) to the
// recipient's key and deposits it. Fetch takes a handoff from the
// drop-off, once, opens it, checks that the sender's passport granted it,
// validates the payload again, and returns it with who sent it.
//
// # Caveats
//
// The keys are the sidecar's agent's: a desk serves the one agent its
// control-plane link joined as. Schemas are read from the control plane
// and kept for SchemaTTL, so a changed schema applies within it. A
// handoff that fails to open is gone: the fetch that failed was its one
// delivery, and the refusal is what the audit log keeps of it.
package desk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/passport"
)

// Why the desk refuses; every error of Send, Inbox and Fetch wraps one of
// these or one of package handoff's.
var (
	// ErrNotGranted: the passport grants no handoff to that recipient with
	// that schema, or does not confirm this sidecar's key for its agent.
	ErrNotGranted = errors.New("handoff not granted")
	// ErrInvalid: the request is not a handoff (fields missing, bad ttl).
	ErrInvalid = errors.New("invalid handoff request")
	// ErrUnknownSchema: the control plane keeps no schema of that name.
	ErrUnknownSchema = errors.New("unknown handoff schema")
	// ErrUnknownRecipient: no enabled agent of that name.
	ErrUnknownRecipient = errors.New("unknown recipient")
	// ErrNotFound: no such handoff waits for the agent.
	ErrNotFound = errors.New("no such handoff")
	// ErrGone: the handoff was fetched already.
	ErrGone = errors.New("handoff fetched already")
	// ErrUnavailable: the control plane cannot be asked, or gave this
	// agent no handoff keys.
	ErrUnavailable = errors.New("handoffs unavailable")
)

// Defaults.
const (
	DefaultTTL       = 24 * time.Hour
	DefaultSchemaTTL = 30 * time.Second
	// schemaMissWait spaces the schema refreshes an unknown name causes.
	schemaMissWait = time.Second
)

// Outgoing is a handoff an agent sends.
type Outgoing struct {
	To      string          `json:"to"`
	Schema  string          `json:"schema"`
	Payload json.RawMessage `json:"payload"`
	// TTL is how long it waits for its recipient: a Go duration ("90m")
	// or a number of seconds; DefaultTTL when empty, handoff.MaxTTL at
	// most.
	TTL TTL `json:"ttl,omitempty"`
}

// Sent is a handoff deposited.
type Sent struct {
	ID            string    `json:"id"`
	To            string    `json:"to"`
	Schema        string    `json:"schema"`
	PayloadSHA256 string    `json:"payload_sha256"`
	Expires       time.Time `json:"expires"`
}

// Waiting is a handoff waiting for the agent: what the control plane
// knows of it.
type Waiting struct {
	ID      string    `json:"id"`
	From    string    `json:"from"`
	Schema  string    `json:"schema"`
	Size    int       `json:"size"`
	Sent    time.Time `json:"sent"`
	Expires time.Time `json:"expires"`
}

// Delivered is a handoff fetched, opened and checked.
type Delivered struct {
	ID            string          `json:"id"`
	From          string          `json:"from"`
	To            string          `json:"to"`
	Schema        string          `json:"schema"`
	Sent          time.Time       `json:"sent"`
	Expires       time.Time       `json:"expires"`
	PayloadSHA256 string          `json:"payload_sha256"`
	Payload       json.RawMessage `json:"payload"`
}

// Verifier checks a passport as it was at a time (*passport.Verifier).
type Verifier interface {
	VerifyAt(token string, at time.Time) (*passport.Claims, error)
}

// Desk sends and receives one agent's handoffs.
type Desk struct {
	// Control is the sidecar's link to the control plane: the agent's
	// keys, the drop-off, the schemas and other agents' public keys.
	Control *client.Client
	// Verifier checks senders' passports.
	Verifier Verifier
	// SchemaTTL is how long schemas are kept before they are read again
	// (DefaultSchemaTTL).
	SchemaTTL time.Duration
	Now       func() time.Time

	mu      sync.Mutex
	schemas map[string]cachedSchema
	read    time.Time // when schemas were read
	missed  time.Time // when an unknown name last caused a read
}

type cachedSchema struct {
	s       *handoff.Schema
	updated time.Time
}

func (d *Desk) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// keys returns the agent's keys once sender's passport shows it is that
// agent: it confirms the signing key this sidecar holds.
func (d *Desk) keys(sender *passport.Claims) (*handoff.AgentKeys, error) {
	keys, _, err := d.Control.HandoffKeys()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if sender.Confirmation == nil || sender.Confirmation.JKT != keys.JKT() {
		return nil, fmt.Errorf("%w: the passport of %s does not confirm the handoff key this sidecar holds (cnf.jkt): handoffs go through the sidecar of the agent's own passport", ErrNotGranted, sender.Subject)
	}
	return keys, nil
}

// Send checks, seals and deposits a handoff from the agent of sender's
// passport (the compact JWT passportToken).
func (d *Desk) Send(ctx context.Context, sender *passport.Claims, passportToken string, out Outgoing) (Sent, error) {
	switch {
	case out.To == "" || out.Schema == "":
		return Sent{}, fmt.Errorf("%w: to and schema are required", ErrInvalid)
	case len(out.Payload) == 0:
		return Sent{}, fmt.Errorf("%w: payload is required", ErrInvalid)
	case len(out.Payload) > handoff.MaxSize:
		return Sent{}, fmt.Errorf("%w: a payload of %d bytes; sealed, a handoff is at most %d", handoff.ErrTooLarge, len(out.Payload), handoff.MaxSize)
	}
	// Sealed compact, so that both ends hash the same bytes.
	var payload bytes.Buffer
	if err := json.Compact(&payload, out.Payload); err != nil {
		return Sent{}, fmt.Errorf("%w: the payload is not JSON", ErrInvalid)
	}
	out.Payload = payload.Bytes()
	if err := handoff.ValidSchemaName(out.Schema); err != nil {
		return Sent{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ttl := time.Duration(out.TTL)
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 || ttl > handoff.MaxTTL {
		return Sent{}, fmt.Errorf("%w: ttl %s, want more than 0 and at most %s", ErrInvalid, ttl, handoff.MaxTTL)
	}
	keys, err := d.keys(sender)
	if err != nil {
		return Sent{}, err
	}
	if g := sender.Scope.AllowsHandoff(out.To, out.Schema); !g.Allowed {
		return Sent{}, fmt.Errorf("%w: %s", ErrNotGranted, g.Reason)
	}
	schema, err := d.schema(ctx, out.Schema)
	if err != nil {
		return Sent{}, err
	}
	if err := schema.Validate(out.Payload); err != nil {
		return Sent{}, fmt.Errorf("schema %s: %w", out.Schema, err)
	}
	pk, err := d.Control.PublicHandoffKeys(ctx, out.To)
	if err != nil {
		return Sent{}, controlError(err, "the recipient's keys")
	}
	now := d.now()
	token, id, err := handoff.Seal(handoff.SealRequest{
		From: sender.Subject, To: out.To, Schema: out.Schema, Passport: passportToken,
		Payload: out.Payload, TTL: ttl, Now: now,
	}, keys, pk.Enc)
	if err != nil {
		return Sent{}, err
	}
	sum := sha256.Sum256(out.Payload)
	hash := hex.EncodeToString(sum[:])
	m, err := d.Control.DepositHandoff(ctx, control.HandoffDeposit{
		ID: id, To: out.To, Schema: out.Schema, Token: token, TTL: control.Duration(ttl), PayloadHash: hash,
	})
	if err != nil {
		return Sent{}, controlError(err, "the deposit")
	}
	return Sent{ID: m.ID, To: m.To, Schema: m.Schema, PayloadSHA256: hash, Expires: m.Expires}, nil
}

// Inbox lists the handoffs waiting for the agent of recipient's passport.
func (d *Desk) Inbox(ctx context.Context, recipient *passport.Claims) ([]Waiting, error) {
	if _, err := d.keys(recipient); err != nil {
		return nil, err
	}
	ms, err := d.Control.Inbox(ctx)
	if err != nil {
		return nil, controlError(err, "the inbox")
	}
	out := make([]Waiting, 0, len(ms))
	for _, m := range ms {
		out = append(out, Waiting{ID: m.ID, From: m.From, Schema: m.Schema, Size: m.Size, Sent: m.Deposited, Expires: m.Expires})
	}
	return out, nil
}

// Fetch takes handoff id for the agent of recipient's passport, once,
// and opens and checks it.
func (d *Desk) Fetch(ctx context.Context, recipient *passport.Claims, id string) (Delivered, error) {
	keys, err := d.keys(recipient)
	if err != nil {
		return Delivered{}, err
	}
	f, err := d.Control.FetchHandoff(ctx, id)
	if err != nil {
		return Delivered{}, controlError(err, "the fetch")
	}
	var sender *passport.Claims
	opened, err := handoff.Open(f.Token, handoff.OpenOptions{
		Recipient: recipient.Subject, Keys: keys, SentAt: f.Deposited, Now: d.now(),
		CheckPassport: func(token string, at time.Time) (string, string, error) {
			c, err := d.Verifier.VerifyAt(token, at)
			if err != nil {
				return "", "", err
			}
			sender = c
			if c.Confirmation == nil {
				return c.Subject, "", nil
			}
			return c.Subject, c.Confirmation.JKT, nil
		},
	})
	if err != nil {
		return Delivered{}, fmt.Errorf("handoff %s from %s: %w", id, f.From, err)
	}
	// The drop-off's word and the sealed handoff's must agree: it was
	// handed the handoff it asked for, from the sender it names.
	if opened.ID != f.ID || opened.From != f.From || opened.Schema != f.Schema {
		return Delivered{}, fmt.Errorf("handoff %s from %s: %w: sealed as %s from %s with schema %s", id, f.From, handoff.ErrMalformed, opened.ID, opened.From, opened.Schema)
	}
	if g := sender.Scope.AllowsHandoff(recipient.Subject, opened.Schema); !g.Allowed {
		return Delivered{}, fmt.Errorf("handoff %s from %s: %w: its passport did not grant it: %s", id, f.From, handoff.ErrSender, g.Reason)
	}
	schema, err := d.schema(ctx, opened.Schema)
	if err != nil {
		return Delivered{}, fmt.Errorf("handoff %s from %s: %w", id, f.From, err)
	}
	if err := schema.Validate(opened.Payload); err != nil {
		return Delivered{}, fmt.Errorf("handoff %s from %s, schema %s: %w", id, f.From, opened.Schema, err)
	}
	return Delivered{
		ID: opened.ID, From: opened.From, To: opened.To, Schema: opened.Schema,
		Sent: f.Deposited, Expires: time.Unix(opened.Expiry, 0).UTC(),
		PayloadSHA256: opened.PayloadHash, Payload: opened.Payload,
	}, nil
}

// schema returns the compiled schema name, reading the schemas again when
// they are older than SchemaTTL or name is not among them. When the
// control plane cannot be asked, the schemas last read serve.
func (d *Desk) schema(ctx context.Context, name string) (*handoff.Schema, error) {
	ttl := d.SchemaTTL
	if ttl <= 0 {
		ttl = DefaultSchemaTTL
	}
	now := d.now()
	d.mu.Lock()
	c, ok := d.schemas[name]
	stale := now.Sub(d.read) >= ttl
	retry := !ok && now.Sub(d.missed) >= schemaMissWait
	if !ok && retry {
		d.missed = now
	}
	d.mu.Unlock()
	switch {
	case ok && !stale:
		return c.s, nil
	case !ok && !stale && !retry:
		return nil, unknownSchema(name)
	}
	list, err := d.Control.HandoffSchemas(ctx)
	if err != nil {
		if ok {
			return c.s, nil
		}
		return nil, controlError(err, "the schemas")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make(map[string]cachedSchema, len(list))
	for _, hs := range list {
		if old, ok := d.schemas[hs.Name]; ok && old.updated.Equal(hs.Updated) {
			next[hs.Name] = old
			continue
		}
		s, err := handoff.CompileSchema(hs.Name, hs.Schema)
		if err != nil {
			continue // the control plane compiled it; a newer validator may not
		}
		next[hs.Name] = cachedSchema{s: s, updated: hs.Updated}
	}
	d.schemas, d.read = next, now
	if c, ok := next[name]; ok {
		return c.s, nil
	}
	return nil, unknownSchema(name)
}

func unknownSchema(name string) error {
	return fmt.Errorf("%w: %s (an operator adds it: stack handoff schema put %s FILE)", ErrUnknownSchema, name, name)
}

// controlError names what the control plane's refusal means here.
func controlError(err error, what string) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusGone && ae.Reason == control.ReasonHandoffExpired:
			return fmt.Errorf("%w: %s", handoff.ErrExpired, ae.Msg)
		case ae.Status == http.StatusGone:
			return fmt.Errorf("%w: %s", ErrGone, ae.Msg)
		case ae.Reason == control.ReasonAgentUnknown || ae.Reason == control.ReasonAgentDisabled:
			return fmt.Errorf("%w: %s", ErrUnknownRecipient, ae.Msg)
		case ae.Status == http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNotFound, ae.Msg)
		case ae.Status == http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %s", handoff.ErrTooLarge, ae.Msg)
		case ae.Status == http.StatusBadRequest:
			return fmt.Errorf("%w: %s", ErrInvalid, ae.Msg)
		}
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// TTL is a duration written as a Go duration string or a number of
// seconds.
type TTL time.Duration

// UnmarshalJSON reads "90m" or 5400.
func (t *TTL) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("ttl %q: want a duration such as \"90m\" or a number of seconds", s)
		}
		*t = TTL(d)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("ttl: want a duration such as \"90m\" or a number of seconds")
	}
	*t = TTL(time.Duration(n * float64(time.Second)))
	return nil
}

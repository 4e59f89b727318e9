package passport

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Role is a named passport template: `stack passport issue --role NAME`
// issues a passport with its scope, TTL and mode. Roles live in the config
// under passport.roles.
type Role struct {
	// Description says what the role is for.
	Description string `json:"description,omitempty" yaml:"description,omitempty" mapstructure:"description"`
	// TTL is the passport lifetime (a duration string such as "10m" in
	// YAML); zero means the issuer's default.
	TTL time.Duration `json:"ttl,omitempty" yaml:"ttl,omitempty" mapstructure:"ttl"`
	// Mode is enforce, alert or shadow; empty means enforce.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty" mapstructure:"mode"`
	// Scope is what the passport allows.
	Scope Scope `json:"scope" yaml:"scope" mapstructure:"scope"`
}

// roleText is Role with the TTL as a duration string, for YAML and JSON.
type roleText struct {
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	TTL         string `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	Mode        string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Scope       Scope  `json:"scope" yaml:"scope"`
}

func (r Role) text() roleText {
	t := roleText{Description: r.Description, Mode: r.Mode, Scope: r.Scope}
	if r.TTL != 0 {
		t.TTL = r.TTL.String()
	}
	return t
}

func (r *Role) fromText(t roleText) error {
	*r = Role{Description: t.Description, Mode: t.Mode, Scope: t.Scope}
	if t.TTL != "" {
		d, err := time.ParseDuration(t.TTL)
		if err != nil {
			return fmt.Errorf("role ttl %q: %w", t.TTL, err)
		}
		r.TTL = d
	}
	return nil
}

// MarshalYAML writes the TTL as a duration string ("10m0s").
func (r Role) MarshalYAML() (any, error) { return r.text(), nil }

// UnmarshalYAML reads the TTL as a duration string.
func (r *Role) UnmarshalYAML(n *yaml.Node) error {
	var t roleText
	if err := n.Decode(&t); err != nil {
		return err
	}
	return r.fromText(t)
}

// MarshalJSON writes the TTL as a duration string.
func (r Role) MarshalJSON() ([]byte, error) { return json.Marshal(r.text()) }

// UnmarshalJSON reads the TTL as a duration string.
func (r *Role) UnmarshalJSON(b []byte) error {
	var t roleText
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	return r.fromText(t)
}

// Validate reports every problem of the role: TTL, mode and scope.
func (r Role) Validate() error {
	var errs []error
	if r.TTL < 0 {
		errs = append(errs, fmt.Errorf("ttl %s is negative", r.TTL))
	}
	if _, err := ParseMode(r.Mode); err != nil {
		errs = append(errs, fmt.Errorf("mode %q: want enforce, alert or shadow", r.Mode))
	}
	if err := r.Scope.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

// ReferenceRoles returns the reference roles, each least-privilege for its
// job. The config package uses them as the defaults of passport.roles.
func ReferenceRoles() map[string]Role {
	return map[string]Role{
		"billing-reporter": {
			Description: "Read-only Stripe billing: balance, balance transactions, charges and invoices.",
			TTL:         15 * time.Minute,
			Mode:        string(ModeEnforce),
			Scope: Scope{{
				Hosts:   []string{"api.stripe.com"},
				Methods: []string{"GET"},
				Paths: []string{
					"/v1/balance",
					"/v1/balance_transactions/**",
					"/v1/charges/**",
					"/v1/invoices/**",
				},
				Credentials: []string{"stripe"},
			}},
		},
		"deploy-assistant": {
			Description: "GitHub deployments and workflow dispatch on repositories, short-lived.",
			TTL:         10 * time.Minute,
			Mode:        string(ModeEnforce),
			Scope: Scope{{
				Hosts:   []string{"api.github.com"},
				Methods: []string{"GET", "POST"},
				Paths: []string{
					"/repos/*/*/deployments/**",
					"/repos/*/*/actions/workflows/*/dispatches",
				},
				Credentials: []string{"github"},
			}},
		},
		"content-publisher": {
			Description: "Publish CMS posts as drafts or scheduled, on blog channels only.",
			TTL:         15 * time.Minute,
			Mode:        string(ModeEnforce),
			Scope: Scope{{
				Hosts:       []string{"api.cms.example.com"},
				Methods:     []string{"POST"},
				Paths:       []string{"/v1/posts"},
				Credentials: []string{"cms"},
				Params: []ParamConstraint{
					{Name: "status", From: FromBody, Op: OpIn, Values: []string{"draft", "scheduled"}},
					{Name: "channel", From: FromBody, Op: OpPrefix, Value: "blog-"},
				},
			}},
		},
	}
}

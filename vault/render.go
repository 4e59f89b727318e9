package vault

import (
	"strings"
)

// RenderKind is how a secret is put into a request.
type RenderKind string

// Render kinds.
const (
	// RenderBearer sets "Authorization: Bearer SECRET".
	RenderBearer RenderKind = "bearer"
	// RenderBasic sets "Authorization: Basic base64(SECRET)"; the secret
	// is "user:password".
	RenderBasic RenderKind = "basic"
	// RenderHeader sets header Name to Template with {secret} replaced.
	RenderHeader RenderKind = "header"
	// RenderQuery sets query parameter Name to the secret.
	RenderQuery RenderKind = "query"
	// RenderSigV4 re-signs an AWS request the agent signed with the
	// placeholder as its access key id (kind aws-sts).
	RenderSigV4 RenderKind = "sigv4"
)

// SecretPlaceholder is the marker a header template replaces with the
// secret.
const SecretPlaceholder = "{secret}"

// maxRenderLen bounds a header name, query name or template.
const maxRenderLen = 256

// Render says how a credential's secret goes into a request. Its text
// form, used in records, flags and config, is one of:
//
//	bearer
//	basic
//	header:NAME=TEMPLATE   e.g. header:X-Api-Key={secret} or header:Authorization=Token {secret}
//	query:NAME             e.g. query:api_key
//	sigv4                  (aws-sts credentials: the request is re-signed)
type Render struct {
	// Kind is bearer, basic, header or query.
	Kind RenderKind
	// Name is the header or query parameter name (header and query only).
	Name string
	// Template is the header value with one {secret} (header only).
	Template string
}

const renderForms = "want bearer, basic, header:NAME=TEMPLATE (TEMPLATE containing {secret} once), query:NAME or sigv4"

// forbiddenHeaders are headers a credential may not set: they frame the
// message, route it, or belong to the hop between agent and proxy.
var forbiddenHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
	"upgrade": true, "te": true, "trailer": true, "keep-alive": true,
	"proxy-authorization": true, "proxy-connection": true, "proxy-authenticate": true,
}

// ParseRender parses the text form of a Render.
func ParseRender(s string) (Render, error) {
	kind, rest, hasArg := strings.Cut(s, ":")
	switch RenderKind(kind) {
	case RenderBearer, RenderBasic, RenderSigV4:
		if hasArg {
			return Render{}, invalid("render %q: %s takes no argument; %s", s, kind, renderForms)
		}
		return Render{Kind: RenderKind(kind)}, nil
	case RenderHeader:
		name, tmpl, ok := strings.Cut(rest, "=")
		if !hasArg || !ok {
			return Render{}, invalid("render %q: %s", s, renderForms)
		}
		r := Render{Kind: RenderHeader, Name: name, Template: tmpl}
		if err := r.Validate(); err != nil {
			return Render{}, err
		}
		return r, nil
	case RenderQuery:
		if !hasArg {
			return Render{}, invalid("render %q: %s", s, renderForms)
		}
		r := Render{Kind: RenderQuery, Name: rest}
		if err := r.Validate(); err != nil {
			return Render{}, err
		}
		return r, nil
	default:
		return Render{}, invalid("render %q: %s", s, renderForms)
	}
}

// Validate reports whether r is a usable Render.
func (r Render) Validate() error {
	switch r.Kind {
	case RenderBearer, RenderBasic, RenderSigV4:
		if r.Name != "" || r.Template != "" {
			return invalid("render %s takes no name or template", r.Kind)
		}
		return nil
	case RenderHeader:
		if r.Name == "" || len(r.Name) > maxRenderLen || !isToken(r.Name) {
			return invalid("render header: name %q is not a valid header name", r.Name)
		}
		if forbiddenHeaders[strings.ToLower(r.Name)] {
			return invalid("render header: a credential may not set %s", r.Name)
		}
		if len(r.Template) > maxRenderLen || strings.Count(r.Template, SecretPlaceholder) != 1 {
			return invalid("render header:%s: the template must contain %s exactly once", r.Name, SecretPlaceholder)
		}
		for i := 0; i < len(r.Template); i++ {
			if c := r.Template[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return invalid("render header:%s: the template contains a control character", r.Name)
			}
		}
		return nil
	case RenderQuery:
		if r.Template != "" {
			return invalid("render query takes no template")
		}
		if r.Name == "" || len(r.Name) > maxRenderLen || !isQueryName(r.Name) {
			return invalid("render query: name %q must be letters, digits, '-', '_', '.' or '~'", r.Name)
		}
		return nil
	case "":
		return invalid("no render form: %s", renderForms)
	default:
		return invalid("render kind %q: %s", r.Kind, renderForms)
	}
}

// String returns the text form ParseRender reads.
func (r Render) String() string {
	switch r.Kind {
	case RenderHeader:
		return string(r.Kind) + ":" + r.Name + "=" + r.Template
	case RenderQuery:
		return string(r.Kind) + ":" + r.Name
	default:
		return string(r.Kind)
	}
}

// IsZero reports whether r is the zero Render (no render form).
func (r Render) IsZero() bool { return r == Render{} }

// MarshalText implements encoding.TextMarshaler.
func (r Render) MarshalText() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Render) UnmarshalText(b []byte) error {
	p, err := ParseRender(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// isToken reports whether s is an RFC 9110 token (a header field name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isQueryName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

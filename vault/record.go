package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/stackctl/stack/inject/mint"
)

// recordFormat is the version of the stored record encoding.
const recordFormat = 1

const (
	dekSize   = 32 // AES-256
	nonceSize = 12
	tagSize   = 16
	// maxSecret bounds a secret: credentials are tokens, not files.
	maxSecret = 64 << 10
	// maxRecord bounds what decodeRecord reads.
	maxRecord = 1 << 20
)

// record is one credential version as stored (JSON) under its name in the
// credentials bucket. Byte fields are base64 in JSON.
type record struct {
	Format  int      `json:"format"`
	Name    string   `json:"name"`
	Version int      `json:"version"`
	Hosts   []string `json:"hosts"`
	Render  string   `json:"render"`
	// Kind is the credential's kind (see package mint); "" is static.
	Kind string `json:"kind,omitempty"`
	// Params are a minting kind's parameters (token endpoint, client id,
	// role): not secret, but bound to the ciphertext like the hosts.
	Params      json.RawMessage `json:"params,omitempty"`
	Created     time.Time       `json:"created"`
	Fingerprint string          `json:"fingerprint"`
	// KMS is the URI of the key the data key was wrapped under, for
	// messages; the KMS itself decides whether it can unwrap.
	KMS string `json:"kms"`
	// WrappedKey is the data key wrapped by the KMS with dekAAD.
	WrappedKey []byte `json:"wrapped_key"`
	// Nonce and Ciphertext are the secret under AES-256-GCM with the data
	// key and secretAAD.
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// encode returns the stored form of r.
func (r *record) encode() ([]byte, error) {
	return json.Marshal(r)
}

// decodeRecord parses and checks the record stored under name. It checks
// everything that can be checked without keys; whatever it accepts is
// still authenticated by the KMS (data key) and GCM (secret) on use.
func decodeRecord(name string, data []byte) (*record, error) {
	if len(data) > maxRecord {
		return nil, corrupt("record larger than %d bytes", maxRecord)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, corrupt("undecodable record (truncated or altered): %v", err)
	}
	if dec.More() {
		return nil, corrupt("trailing data after record")
	}
	switch {
	case r.Format != recordFormat:
		return nil, corrupt("record format %d, want %d", r.Format, recordFormat)
	case r.Name != name:
		return nil, corrupt("record names credential %q but is stored under %q", r.Name, name)
	case r.Version < 1:
		return nil, corrupt("version %d", r.Version)
	case len(r.WrappedKey) == 0:
		return nil, corrupt("no wrapped data key")
	case len(r.Nonce) != nonceSize:
		return nil, corrupt("nonce of %d bytes", len(r.Nonce))
	case len(r.Ciphertext) < tagSize || len(r.Ciphertext) > maxSecret+tagSize:
		return nil, corrupt("ciphertext of %d bytes", len(r.Ciphertext))
	case r.Created.IsZero():
		return nil, corrupt("no creation time")
	}
	if err := ValidateName(r.Name); err != nil {
		return nil, corrupt("%v", err)
	}
	hosts, err := NormalizeHosts(r.Hosts)
	if err != nil || !slices.Equal(hosts, r.Hosts) {
		return nil, corrupt("hosts are not normalized")
	}
	render, err := ParseRender(r.Render)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	if r.Kind == mint.KindStatic {
		return nil, corrupt("kind static is stored as no kind")
	}
	if err := checkKind(r.Kind, r.Params, render); err != nil {
		return nil, corrupt("%v", err)
	}
	return &r, nil
}

// credential returns the listing form of r.
func (r *record) credential() *Credential {
	render, _ := ParseRender(r.Render) // checked by decodeRecord or Put
	return &Credential{
		Name:        r.Name,
		Hosts:       slices.Clone(r.Hosts),
		Render:      render,
		Version:     r.Version,
		Created:     r.Created,
		Fingerprint: r.Fingerprint,
		Kind:        kindName(r.Kind),
		Params:      bytes.Clone(r.Params),
	}
}

// kindName is the kind a listing shows: static for records without one.
func kindName(k string) string {
	if k == "" {
		return mint.KindStatic
	}
	return k
}

// storedKind is the kind a record stores: none for static, so that
// static records read the same as before kinds existed.
func storedKind(k string) string {
	if k == mint.KindStatic {
		return ""
	}
	return k
}

// checkKind checks a record's kind against its parameters and render:
// the kind is known, only minting kinds have parameters, and the sigv4
// render goes with aws-sts alone.
func checkKind(kind string, params json.RawMessage, render Render) error {
	k := kindName(kind)
	switch {
	case !mint.Known(k):
		return invalid("unknown kind %q: want one of %v", kind, mint.Kinds)
	case !mint.Minted(k) && len(params) > 0:
		return invalid("kind static takes no parameters")
	case mint.Minted(k) && len(params) == 0:
		return invalid("kind %s needs its parameters", k)
	case len(params) > mint.MaxParams:
		return invalid("parameters of %d bytes, limit %d", len(params), mint.MaxParams)
	case k == mint.KindAWS && render.Kind != RenderSigV4:
		return invalid("kind aws-sts renders as sigv4 (the request is re-signed), not %s", render.Kind)
	case k != mint.KindAWS && render.Kind == RenderSigV4:
		return invalid("render sigv4 is for kind aws-sts only")
	}
	if len(params) > 0 && !json.Valid(params) {
		return invalid("parameters are not JSON")
	}
	return nil
}

// dekAAD binds a wrapped data key to one credential version, so that the
// KMS refuses a wrapped key moved to another record.
func dekAAD(name string, version int) []byte {
	return []byte("stack-vault/v1/data-key\x00" + name + "\x00" + strconv.Itoa(version))
}

// secretAAD binds the secret's ciphertext to everything the proxy trusts
// in the record: the name and version (so ciphertexts cannot be swapped),
// and the hosts and render form (so editing the file cannot send a secret
// to another host or header).
func (r *record) secretAAD() []byte {
	b, _ := json.Marshal(struct {
		F int       `json:"f"`
		N string    `json:"n"`
		V int       `json:"v"`
		H []string  `json:"h"`
		R string    `json:"r"`
		C time.Time `json:"c"`
		P string    `json:"p"`
		// Omitted when empty, so static records authenticate as they
		// did before kinds existed.
		K string          `json:"k,omitempty"`
		Q json.RawMessage `json:"q,omitempty"`
	}{recordFormat, r.Name, r.Version, r.Hosts, r.Render, r.Created, r.Fingerprint, r.Kind, r.Params})
	return append([]byte("stack-vault/v1/secret\x00"), b...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts secret into r under dek.
func (r *record) seal(dek, nonce, secret []byte) error {
	aead, err := newGCM(dek)
	if err != nil {
		return err
	}
	r.Nonce = nonce
	r.Ciphertext = aead.Seal(nil, nonce, secret, r.secretAAD())
	return nil
}

// open decrypts r's secret with dek.
func (r *record) open(dek []byte) ([]byte, error) {
	if len(dek) != dekSize {
		return nil, corrupt("data key of %d bytes", len(dek))
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	secret, err := aead.Open(nil, r.Nonce, r.Ciphertext, r.secretAAD())
	if err != nil {
		return nil, corrupt("secret does not authenticate (record altered, truncated, or swapped with another)")
	}
	return secret, nil
}

package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// Actions recorded by STACK. Action is an open set: other values are
// stored as given.
const (
	ActionCredentialAccess = "credential_access"
	ActionRequest          = "request"
	ActionRequestDenied    = "request_denied"
	ActionDetectorFired    = "detector_fired"
	ActionPassportRevoked  = "passport_revoked"
	ActionPassportIssued   = "passport_issued"
	ActionCheckpoint       = "checkpoint"
	ActionPruneAnchor      = "prune_anchor"
)

// FormatVersion is the version byte that starts every record encoded by
// this package. A later version may append fields; it keeps the first 41
// bytes (version, seq, prev_hash) in place so chain links can be checked
// by readers that do not know the new fields.
const FormatVersion = 1

// MaxFieldLen bounds each string field of a record in bytes; it keeps a
// record small enough that a page of the log stays cheap to read.
const MaxFieldLen = 8192

// Hash is a SHA-256 digest; it prints and marshals as lowercase hex.
type Hash [32]byte

// GenesisHash is the prev_hash of the first record of every log:
// SHA-256 of the ASCII string "stack-audit-v1 genesis".
var GenesisHash = Hash(sha256.Sum256([]byte("stack-audit-v1 genesis")))

// String returns h in lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText returns h in lowercase hex.
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText parses 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("audit: hash: want %d hex digits, got %d", 2*len(h), len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Record is one audit event. Append fills Seq, EventID (when empty),
// TimestampMS (when zero), PrevHash and Hash. No field may hold a secret:
// a credential is named by CredentialID and CredentialFingerprint.
type Record struct {
	Seq                   uint64 `json:"seq"`
	EventID               string `json:"event_id"`
	TimestampMS           int64  `json:"timestamp_ms"`
	AgentID               string `json:"agent_id,omitempty"`
	PassportJTI           string `json:"passport_jti,omitempty"`
	Action                string `json:"action"`
	CredentialID          string `json:"credential_id,omitempty"`
	CredentialFingerprint string `json:"credential_fingerprint,omitempty"`
	Host                  string `json:"host,omitempty"`
	Method                string `json:"method,omitempty"`
	Path                  string `json:"path,omitempty"`
	// Status is the HTTP status the request was answered with, if any.
	Status int `json:"status,omitempty"`
	// Reason is a machine reason such as "scope_denied".
	Reason   string `json:"reason,omitempty"`
	Detector string `json:"detector,omitempty"`
	Severity string `json:"severity,omitempty"`
	// Detail is short human text; never a secret or a body.
	Detail     string `json:"detail,omitempty"`
	BytesIn    int64  `json:"bytes_in,omitempty"`
	BytesOut   int64  `json:"bytes_out,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	PrevHash   Hash   `json:"prev_hash"`
	Hash       Hash   `json:"hash"`
}

// strings returns the string fields in their encoding order. The order is
// part of the format (docs/audit-format.md) and must never change.
func (r *Record) strings() [13]*string {
	return [13]*string{
		&r.EventID, &r.AgentID, &r.PassportJTI, &r.Action, &r.CredentialID,
		&r.CredentialFingerprint, &r.Host, &r.Method, &r.Path, &r.Reason,
		&r.Detector, &r.Severity, &r.Detail,
	}
}

// headerLen is version (1) + seq (8) + prev_hash (32) + timestamp_ms (8).
const (
	headerLen  = 1 + 8 + 32 + 8
	trailerLen = 4 * 8
	minBodyLen = headerLen + 13 + trailerLen
)

// validate reports why r cannot be stored, if it cannot.
func (r *Record) validate() error {
	if r.Action == "" {
		return fmt.Errorf("%w: action is empty", ErrInvalidRecord)
	}
	for i, p := range r.strings() {
		if len(*p) > MaxFieldLen {
			return fmt.Errorf("%w: field %s is %d bytes, max %d", ErrInvalidRecord, fieldNames[i], len(*p), MaxFieldLen)
		}
		if !utf8.ValidString(*p) {
			return fmt.Errorf("%w: field %s is not UTF-8", ErrInvalidRecord, fieldNames[i])
		}
	}
	return nil
}

var fieldNames = [13]string{
	"event_id", "agent_id", "passport_jti", "action", "credential_id",
	"credential_fingerprint", "host", "method", "path", "reason",
	"detector", "severity", "detail",
}

// appendBody appends the canonical encoding of r (everything but Hash) to
// dst. A non-nil eventID is encoded in place of r.EventID.
func (r *Record) appendBody(dst, eventID []byte) []byte {
	dst = append(dst, FormatVersion)
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = append(dst, r.PrevHash[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TimestampMS))
	for i, p := range r.strings() {
		if i == 0 && eventID != nil {
			dst = binary.AppendUvarint(dst, uint64(len(eventID)))
			dst = append(dst, eventID...)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(*p)))
		dst = append(dst, *p...)
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(int64(r.Status)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.BytesIn))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.BytesOut))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.DurationMS))
	return dst
}

// storedLen is the length of r's stored value, with a UUID as its event
// ID when it has none.
func (r *Record) storedLen() int {
	n := headerLen + trailerLen + len(r.Hash)
	for i, p := range r.strings() {
		l := len(*p)
		if i == 0 && l == 0 {
			l = uuidLen
		}
		n += uvarintLen(uint64(l)) + l
	}
	return n
}

// appendStored computes r.Hash and appends the stored value (body
// followed by the 32-byte hash) to dst. It returns the grown dst and the
// stored value, a full slice of it that later appends never overwrite.
func (r *Record) appendStored(dst []byte) (grown, stored []byte) {
	return r.appendStoredID(dst, nil)
}

// appendStoredID is appendStored with eventID, when not nil, encoded in
// place of r.EventID.
func (r *Record) appendStoredID(dst, eventID []byte) (grown, stored []byte) {
	start := len(dst)
	dst = r.appendBody(dst, eventID)
	r.Hash = sha256.Sum256(dst[start:])
	dst = append(dst, r.Hash[:]...)
	return dst, dst[start:len(dst):len(dst)]
}

// EncodeStored returns the bytes stored for r under its key: the
// canonical body followed by SHA-256 of the body. It sets r.Hash.
func EncodeStored(r *Record) []byte {
	_, v := r.appendStored(nil)
	return v
}

// DecodeStored decodes a stored value. It checks the structure and that
// the trailing hash is the SHA-256 of the body; it does not check chain
// links.
func DecodeStored(v []byte) (Record, error) {
	var r Record
	if len(v) < minBodyLen+32 {
		return r, fmt.Errorf("%w: record of %d bytes is too short", ErrMalformed, len(v))
	}
	body, sum := v[:len(v)-32], v[len(v)-32:]
	if h := sha256.Sum256(body); string(h[:]) != string(sum) {
		return r, fmt.Errorf("%w: record hash does not match its bytes", ErrMalformed)
	}
	if err := decodeBody(body, &r); err != nil {
		return r, err
	}
	copy(r.Hash[:], sum)
	return r, nil
}

// decodeBody parses a canonical body into r. It accepts exactly what
// appendBody produces: minimal varints, UTF-8 strings no longer than
// MaxFieldLen, no trailing bytes. With r == nil it only checks.
func decodeBody(b []byte, r *Record) error {
	if len(b) < minBodyLen {
		return fmt.Errorf("%w: record body of %d bytes is too short", ErrMalformed, len(b))
	}
	if b[0] != FormatVersion {
		return fmt.Errorf("%w: record format version %d", ErrMalformed, b[0])
	}
	var tmp Record
	if r == nil {
		r = &tmp
	}
	r.Seq = binary.BigEndian.Uint64(b[1:9])
	copy(r.PrevHash[:], b[9:41])
	r.TimestampMS = int64(binary.BigEndian.Uint64(b[41:49]))
	rest := b[headerLen:]
	for i, p := range r.strings() {
		n, k := binary.Uvarint(rest)
		if k <= 0 || k != uvarintLen(n) {
			return fmt.Errorf("%w: field %s: bad length", ErrMalformed, fieldNames[i])
		}
		if n > MaxFieldLen || n > uint64(len(rest)-k) {
			return fmt.Errorf("%w: field %s: length %d out of range", ErrMalformed, fieldNames[i], n)
		}
		s := rest[k : k+int(n)]
		if !utf8.Valid(s) {
			return fmt.Errorf("%w: field %s is not UTF-8", ErrMalformed, fieldNames[i])
		}
		if r != &tmp {
			*p = string(s)
		}
		rest = rest[k+int(n):]
	}
	if len(rest) != trailerLen {
		return fmt.Errorf("%w: %d bytes after the string fields, want %d", ErrMalformed, len(rest), trailerLen)
	}
	r.Status = int(int64(binary.BigEndian.Uint64(rest[0:8])))
	r.BytesIn = int64(binary.BigEndian.Uint64(rest[8:16]))
	r.BytesOut = int64(binary.BigEndian.Uint64(rest[16:24]))
	r.DurationMS = int64(binary.BigEndian.Uint64(rest[24:32]))
	return nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// seqKey returns the bucket key of seq.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// uuidLen is the length of a UUID's text form.
const uuidLen = 36

// idSource hands out the random bytes of event IDs, read from crypto/rand
// a few hundred IDs at a time rather than one call each.
type idSource struct {
	buf [64 * 16]byte
	off int
}

// uuid writes a random UUID (version 4) to dst.
func (s *idSource) uuid(dst *[uuidLen]byte) {
	if s.off == 0 {
		_, _ = rand.Read(s.buf[:]) // crypto/rand.Read never returns an error
	}
	b := [16]byte(s.buf[s.off:])
	s.off = (s.off + len(b)) % len(s.buf)
	formatUUID(dst, &b)
}

// formatUUID writes b, made a version 4 UUID, to s in its text form.
func formatUUID(s *[uuidLen]byte, b *[16]byte) {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
}

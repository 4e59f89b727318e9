package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Origins: the first line of a checkpoint's and an anchor's note text.
const (
	CheckpointOrigin = "stack-audit/v1"
	AnchorOrigin     = "stack-audit-anchor/v1"
)

// Checkpoint is a signed statement that the log held Size records and that
// the last of them hashed to Head, at Time.
type Checkpoint struct {
	Size uint64
	Head Hash
	Time time.Time
	// Note is the stored signed note (text, blank line, signatures).
	Note []byte
}

// Anchor is what Prune leaves behind: the sequence number and hash of the
// last removed record, from which the remaining records chain on.
type Anchor struct {
	Seq  uint64
	Hash Hash
	// Time is when the prune ran.
	Time time.Time
	// Signed reports whether the stored anchor carries signatures.
	Signed bool
	// Note is the stored note (signed) or bare text (unsigned).
	Note []byte
}

// statementText renders the note text shared by checkpoints and anchors:
// origin, number, base64 hash, unix milliseconds, each on its own line.
func statementText(origin string, n uint64, h Hash, t time.Time) string {
	return origin + "\n" + strconv.FormatUint(n, 10) + "\n" +
		base64.StdEncoding.EncodeToString(h[:]) + "\n" +
		strconv.FormatInt(t.UnixMilli(), 10) + "\n"
}

// parseStatement parses text rendered by statementText for origin.
func parseStatement(origin, text string) (uint64, Hash, time.Time, error) {
	var h Hash
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" || lines[0] != origin {
		return 0, h, time.Time{}, fmt.Errorf("%w: %s note text has the wrong shape", ErrMalformed, origin)
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != lines[1] {
		return 0, h, time.Time{}, fmt.Errorf("%w: %s: bad number %q", ErrMalformed, origin, lines[1])
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(raw) != len(h) {
		return 0, h, time.Time{}, fmt.Errorf("%w: %s: bad hash %q", ErrMalformed, origin, lines[2])
	}
	copy(h[:], raw)
	ms, err := strconv.ParseInt(lines[3], 10, 64)
	if err != nil || strconv.FormatInt(ms, 10) != lines[3] {
		return 0, h, time.Time{}, fmt.Errorf("%w: %s: bad time %q", ErrMalformed, origin, lines[3])
	}
	return n, h, time.UnixMilli(ms).UTC(), nil
}

// splitNote returns the text of a stored note and whether it carries a
// signature block. The texts this package writes contain no blank line, so
// the first blank line ends the text.
func splitNote(msg []byte) (text string, signed bool) {
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return string(msg[:i+1]), true
	}
	return string(msg), false
}

// openNote checks msg's signatures against verifiers (when not nil) and
// returns its text. Any doubt is an error: an unknown key, a bad signature
// or an unsigned note.
func openNote(msg []byte, verifiers note.Verifiers) (string, error) {
	if verifiers == nil {
		text, _ := splitNote(msg)
		return text, nil
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return "", errors.New("no signature by a trusted key")
		}
		return "", err
	}
	return n.Text, nil
}

func signStatement(text string, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		return nil, fmt.Errorf("audit: sign %s: %w", strings.SplitN(text, "\n", 2)[0], err)
	}
	return msg, nil
}

// ParseCheckpoint parses a stored checkpoint note. With verifiers it
// also checks the signature and fails unless a trusted key signed it.
func ParseCheckpoint(msg []byte, verifiers note.Verifiers) (Checkpoint, error) {
	text, err := openNote(msg, verifiers)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: open checkpoint: %w", err)
	}
	size, head, t, err := parseStatement(CheckpointOrigin, text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: parse checkpoint: %w", err)
	}
	return Checkpoint{Size: size, Head: head, Time: t, Note: bytes.Clone(msg)}, nil
}

// ParseAnchor parses a stored anchor. With verifiers it also checks the
// signature and fails unless a trusted key signed it: an unsigned anchor
// is then an error.
func ParseAnchor(msg []byte, verifiers note.Verifiers) (Anchor, error) {
	_, signed := splitNote(msg)
	text, err := openNote(msg, verifiers)
	if err != nil {
		return Anchor{}, fmt.Errorf("audit: open anchor: %w", err)
	}
	seq, h, t, err := parseStatement(AnchorOrigin, text)
	if err != nil {
		return Anchor{}, fmt.Errorf("audit: parse anchor: %w", err)
	}
	return Anchor{Seq: seq, Hash: h, Time: t, Signed: signed, Note: bytes.Clone(msg)}, nil
}

package fleetlog

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is the content of a verified checkpoint.
type Checkpoint struct {
	Origin string // the log's name, which is also the signing key's name
	Size   uint64 // number of leaves in the tree
	Root   []byte // RFC 6962 root hash of the tree (32 bytes)
}

// ParseCheckpoint opens a checkpoint with the log's public note verifier key
// (the "name+hash+key" string) and returns its content. It fails with
// ErrKey for a bad key, ErrSignature unless the key signed the note, and
// ErrCheckpoint for a malformed body or an origin other than the key's name.
// Lines after the root (checkpoint extensions) are signed but ignored.
func ParseCheckpoint(verifierKey string, checkpoint []byte) (Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrKey, err)
	}
	n, err := note.Open(checkpoint, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, fmt.Errorf("%w %q: %v", ErrSignature, v.Name(), err)
		}
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return parseBody(n.Text, v.Name())
}

// parseBody parses a checkpoint's signed text: origin, decimal size and
// base64 root, one a line.
func parseBody(text, origin string) (Checkpoint, error) {
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(text)); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin is %q, want %q", ErrCheckpoint, c.Origin, origin)
	}
	if len(c.Hash) != rfc6962.DefaultHasher.Size() {
		return Checkpoint{}, fmt.Errorf("%w: root hash is %d bytes, want %d", ErrCheckpoint, len(c.Hash), rfc6962.DefaultHasher.Size())
	}
	return Checkpoint{Origin: c.Origin, Size: c.Size, Root: c.Hash}, nil
}

// VerifyInclusion checks that leaf is at index in the tree committed to by
// checkpoint, which must be signed by verifierKey. It needs nothing but the
// key, so a command line tool can check a proof offline.
func VerifyInclusion(verifierKey string, checkpoint, leaf []byte, index uint64, inclusion [][]byte) error {
	cp, err := ParseCheckpoint(verifierKey, checkpoint)
	if err != nil {
		return err
	}
	if index >= cp.Size {
		return fmt.Errorf("%w: index %d is not in a tree of size %d", ErrProof, index, cp.Size)
	}
	h := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(h, index, cp.Size, h.HashLeaf(leaf), inclusion, cp.Root); err != nil {
		return fmt.Errorf("%w: inclusion of leaf %d in tree of size %d: %v", ErrProof, index, cp.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree committed to by older is a prefix
// of the tree committed to by newer; both must be signed by verifierKey.
func VerifyConsistency(verifierKey string, older, newer []byte, consistency [][]byte) error {
	o, err := ParseCheckpoint(verifierKey, older)
	if err != nil {
		return fmt.Errorf("older checkpoint: %w", err)
	}
	n, err := ParseCheckpoint(verifierKey, newer)
	if err != nil {
		return fmt.Errorf("newer checkpoint: %w", err)
	}
	if o.Size > n.Size {
		return fmt.Errorf("%w: older checkpoint has size %d, larger than the newer's %d", ErrProof, o.Size, n.Size)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, o.Size, n.Size, consistency, o.Root, n.Root); err != nil {
		return fmt.Errorf("%w: consistency of size %d with size %d: %v", ErrProof, o.Size, n.Size, err)
	}
	return nil
}

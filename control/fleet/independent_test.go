package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/control/fleetlog"
)

// checkProofBundle checks a proof bundle (`stack audit prove --json`)
// with the transparency-dev libraries and the standard library alone, as
// docs/fleet-log.md shows: nothing of STACK's code is used, so the format
// is what the docs say, not what our verifier happens to accept.
func checkProofBundle(verifierKey string, bundle []byte) (eventID string, err error) {
	var p struct {
		Index      uint64   `json:"index"`
		Leaf       []byte   `json:"leaf"`
		Hashes     [][]byte `json:"hashes"`
		Checkpoint []byte   `json:"checkpoint"`
		Item       struct {
			Position int `json:"position"`
			Record   struct {
				EventID string `json:"event_id"`
				Hash    string `json:"hash"`
			} `json:"record"`
		} `json:"item"`
	}
	if err := json.Unmarshal(bundle, &p); err != nil {
		return "", err
	}
	// 1. The checkpoint is a signed note (C2SP signed-note) whose text is
	//    origin, tree size and root hash (C2SP tlog-checkpoint).
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return "", err
	}
	n, err := note.Open(p.Checkpoint, note.VerifierList(v))
	if err != nil {
		return "", err
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || lines[0] != v.Name() {
		return "", errors.New("checkpoint: wrong origin or shape")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return "", err
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		return "", err
	}
	// 2. The leaf is in that tree (RFC 6962 hashing).
	leafHash := rfc6962.DefaultHasher.HashLeaf(p.Leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, size, leafHash, p.Hashes, root); err != nil {
		return "", err
	}
	// 3. The record is in the leaf: a records leaf holds stored records,
	//    each ending with the SHA-256 of the bytes before it.
	var leaf struct {
		Kind    string   `json:"kind"`
		Records [][]byte `json:"records"`
	}
	if err := json.Unmarshal(p.Leaf, &leaf); err != nil {
		return "", err
	}
	if leaf.Kind != "records" || p.Item.Position >= len(leaf.Records) {
		return "", errors.New("the leaf does not hold the record")
	}
	stored := leaf.Records[p.Item.Position]
	body, sum := stored[:len(stored)-32], stored[len(stored)-32:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) || fmt.Sprintf("%x", sum) != p.Item.Record.Hash {
		return "", errors.New("the record's hash is not the stored record's")
	}
	return p.Item.Record.EventID, nil
}

func TestProofChecksWithoutOurCode(t *testing.T) {
	f := newFixture(t)
	sc := newSidecarLog(t, 10)
	sc.append(40, "alice")
	ship(t, f, alice, sc.batch(1, 40))
	ctx := context.Background()
	ck, err := f.tree.WaitCheckpoint(ctx, f.size()-1)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := fleetlog.ParseCheckpoint(f.key, ck)
	if err != nil {
		t.Fatal(err)
	}
	c := cp.Size
	var ids []string
	if err := f.w.Export(ctx, Query{}, func(it Item) error { ids = append(ids, it.Record.EventID); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ids[0], ids[17], ids[39]} {
		idx, pos, err := f.w.Locate(id)
		if err != nil {
			t.Fatal(err)
		}
		hashes, err := f.tree.InclusionProof(ctx, idx, c)
		if err != nil {
			t.Fatal(err)
		}
		leaf, item, err := f.w.Record(ctx, idx, pos)
		if err != nil {
			t.Fatal(err)
		}
		bundle, _ := json.Marshal(Proof{Index: idx, Size: c, Leaf: leaf, Hashes: hashes, Checkpoint: ck, Item: item})
		got, err := checkProofBundle(f.key, bundle)
		if err != nil || got != id {
			t.Fatalf("independent check of %s: %q, %v", id, got, err)
		}
		// A bundle whose leaf was changed fails the independent check too.
		bad := bytes.Replace(bundle, []byte(`"index":`+strconv.FormatUint(idx, 10)), []byte(`"index":`+strconv.FormatUint((idx+1)%c, 10)), 1)
		if _, err := checkProofBundle(f.key, bad); err == nil {
			t.Fatalf("a proof moved to another index checked")
		}
	}
}

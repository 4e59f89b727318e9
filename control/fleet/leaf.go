package fleet

import (
	"encoding/json"
	"fmt"

	"github.com/stackctl/stack/audit"
)

// LeafVersion is the version of the leaf format.
const LeafVersion = 1

// Kinds of leaf.
const (
	// LeafStream opens a stream: Seq is the first seq the witness holds,
	// Data the JSON StreamOpening (the checkpoint key, the anchor).
	LeafStream = "stream"
	// LeafRecords are accepted records of one stream: Records their
	// stored values (docs/audit-format.md), of consecutive seqs from Seq.
	// Records go into the fleet log a run at a time (see maxLeafRecords):
	// each leaf costs the log a few file writes.
	LeafRecords = "records"
	// LeafCheckpoint is a sidecar checkpoint the witness verified: Seq its
	// size, Data the note with the sidecar's and the witness's signatures.
	LeafCheckpoint = "checkpoint"
)

// Leaf is one entry of the fleet log, encoded as compact JSON with its
// fields in this order. A verifier needs only this type's documentation
// and docs/audit-format.md to read one.
type Leaf struct {
	V       int    `json:"v"`
	Kind    string `json:"kind"`
	Log     string `json:"log"`
	Sidecar string `json:"sidecar"`
	Agent   string `json:"agent"`
	Seq     uint64 `json:"seq"`
	Data    []byte `json:"data,omitempty"`
	// Records are a LeafRecords' stored values.
	Records [][]byte `json:"records,omitempty"`

	// decoded are Records decoded, when the witness has them already.
	decoded []audit.Record
}

// maxLeafRecords bounds the stored bytes of one LeafRecords (a larger
// record has a leaf of its own). Grouping records saves
// leaves, but a proof reads its leaf's whole entry bundle (256 leaves):
// BenchmarkProve and BenchmarkShip chose 2 KiB (about eight records):
// 0.86 ms a proof and 60-67k records/s, against 1.2 ms at 4 KiB and
// 8.7 ms at 40 KiB.
const maxLeafRecords = 2 << 10

// StreamOpening is the Data of a LeafStream.
type StreamOpening struct {
	Key    string `json:"key"`
	Anchor []byte `json:"anchor,omitempty"`
}

// Marshal encodes the leaf.
func (l *Leaf) Marshal() []byte {
	b, err := json.Marshal(l)
	if err != nil {
		panic(err) // a struct of strings, integers and bytes always encodes
	}
	return b
}

// ParseLeaf decodes a leaf and checks its version and kind.
func ParseLeaf(b []byte) (Leaf, error) {
	var l Leaf
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("fleet: leaf: %w", err)
	}
	if l.V != LeafVersion {
		return l, fmt.Errorf("fleet: leaf: version %d, want %d", l.V, LeafVersion)
	}
	switch l.Kind {
	case LeafStream, LeafCheckpoint:
	case LeafRecords:
		if len(l.Records) == 0 {
			return l, fmt.Errorf("fleet: leaf: a records leaf without records")
		}
	default:
		return l, fmt.Errorf("fleet: leaf: unknown kind %q", l.Kind)
	}
	if l.Log == "" {
		return l, fmt.Errorf("fleet: leaf: no log")
	}
	return l, nil
}

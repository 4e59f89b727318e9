package fleet

import (
	"fmt"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control/fleetlog"
)

// VerifyProof checks a proof offline with only the fleet log's public
// note key: the checkpoint's signature, the inclusion of the leaf in the
// tree the checkpoint commits to, and that the leaf holds the record the
// proof shows (its stored bytes hash to the record's hash). It returns
// the record.
func VerifyProof(key string, p Proof) (audit.Record, error) {
	if err := fleetlog.VerifyInclusion(key, p.Checkpoint, p.Leaf, p.Index, p.Hashes); err != nil {
		return audit.Record{}, err
	}
	ck, err := fleetlog.ParseCheckpoint(key, p.Checkpoint)
	if err != nil {
		return audit.Record{}, err
	}
	if ck.Size != p.Size {
		return audit.Record{}, fmt.Errorf("fleet: proof: says size %d, its checkpoint %d", p.Size, ck.Size)
	}
	l, err := ParseLeaf(p.Leaf)
	if err != nil {
		return audit.Record{}, err
	}
	it, err := leafItem(&l, p.Index, p.Item.Position)
	if err != nil {
		return audit.Record{}, fmt.Errorf("fleet: proof: %w", err)
	}
	r := it.Record
	if r != p.Item.Record || l.Log != p.Item.Log || l.Sidecar != p.Item.Sidecar || l.Agent != p.Item.Agent || p.Item.Index != p.Index {
		return audit.Record{}, fmt.Errorf("fleet: proof: the record shown is not the one the leaf holds")
	}
	return r, nil
}

// VerifyConsistency checks offline that the checkpoint in c extends the
// older checkpoint (both signed with key): the fleet log of c.To leaves
// holds, unchanged, every leaf the older one committed to. It returns the
// newer checkpoint's size.
func VerifyConsistency(key string, older []byte, c Consistency) (uint64, error) {
	old, err := fleetlog.ParseCheckpoint(key, older)
	if err != nil {
		return 0, fmt.Errorf("the older checkpoint: %w", err)
	}
	if old.Size != c.From {
		return 0, fmt.Errorf("fleet: consistency proof from size %d, the older checkpoint has %d", c.From, old.Size)
	}
	if err := fleetlog.VerifyConsistency(key, older, c.Checkpoint, c.Hashes); err != nil {
		return 0, err
	}
	ck, err := fleetlog.ParseCheckpoint(key, c.Checkpoint)
	if err != nil {
		return 0, err
	}
	return ck.Size, nil
}

package fleet

import (
	"testing"

	"github.com/stackctl/stack/audit"
)

// FuzzParseLeaf: a leaf read back from the fleet log (or from a proof
// bundle someone hands over) parses or is refused, never panics; what
// parses re-encodes to a leaf that parses the same, and a records leaf's
// items decode or are refused one by one.
func FuzzParseLeaf(f *testing.F) {
	r := audit.Record{Seq: 1, EventID: "0b8a3c1e-2f4d-4a6b-8c9d-0e1f2a3b4c5d", TimestampMS: 1, Action: audit.ActionCredentialAccess, PrevHash: audit.GenesisHash}
	stored := audit.EncodeStored(&r)
	rec := Leaf{V: LeafVersion, Kind: LeafRecords, Log: "0123456789abcdef0123456789abcdef", Sidecar: "sc", Agent: "a", Seq: 1, Records: [][]byte{stored}}
	f.Add(rec.Marshal())
	f.Add((&Leaf{V: LeafVersion, Kind: LeafStream, Log: "x", Seq: 1, Data: []byte(`{"key":"k"}`)}).Marshal())
	f.Add([]byte(`{"v":1,"kind":"records","log":"x","records":["AA=="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLeaf(b)
		if err != nil {
			return
		}
		again, err := ParseLeaf(l.Marshal())
		if err != nil || again.Kind != l.Kind || again.Log != l.Log || len(again.Records) != len(l.Records) {
			t.Fatalf("re-encoded leaf: %+v, %v (was %+v)", again, err, l)
		}
		for pos := range l.Records {
			if it, err := leafItem(&l, 0, pos); err == nil && it.Record.Hash == (audit.Hash{}) {
				t.Fatalf("item %d decoded without a hash", pos)
			}
		}
	})
}

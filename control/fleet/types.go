package fleet

import "time"

// Batch is a run of a sidecar's audit records, shipped in order. Its
// records are the stored values of consecutive seqs, exactly as the
// sidecar's log holds them (docs/audit-format.md): the witness checks each
// hash and link itself.
type Batch struct {
	// Log is the sidecar log's identity (audit.Log.ID).
	Log string `json:"log"`
	// Key is the note verifier key ("name+hash+base64") the log's
	// checkpoints are signed with. The first batch of a log pins it.
	Key string `json:"key"`
	// Head is the seq of the sidecar log's last record when the batch was
	// read: a head below what the witness holds is a cut tail.
	Head uint64 `json:"head"`
	// Anchor is the log's anchor note when it was pruned before it first
	// shipped: the chain the witness holds starts after it.
	Anchor []byte `json:"anchor,omitempty"`
	// Records are stored values of consecutive seqs.
	Records [][]byte `json:"records"`
	// Checkpoints are the log's signed checkpoints whose sizes fall
	// within the batch's records.
	Checkpoints [][]byte `json:"checkpoints,omitempty"`
}

// BatchResponse says where the witness stands after a batch.
type BatchResponse struct {
	// Next is the seq it expects next: it holds every record before it.
	Next uint64 `json:"next"`
	// Cosigned are the batch's checkpoints the witness verified, with its
	// own signature added.
	Cosigned [][]byte `json:"cosigned,omitempty"`
}

// Stream is what the witness holds of one sidecar log.
type Stream struct {
	Log     string `json:"log"`
	Agent   string `json:"agent"`
	Sidecar string `json:"sidecar"`
	Key     string `json:"key"`
	// First is the first seq it holds (1 unless the log was pruned before
	// it first shipped); Next the seq it expects next.
	First uint64 `json:"first"`
	Next  uint64 `json:"next"`
	// Head is the hash of record Next-1 (or of the anchor), hex.
	Head string `json:"head"`
	// Cosigned is the newest sidecar checkpoint it cosigned.
	Cosigned []byte    `json:"cosigned,omitempty"`
	Updated  time.Time `json:"updated"`
	// SidecarHead is the last seq of the sidecar's log as its last batch
	// since the witness opened said, and Shipped when that batch came:
	// with Next they give the stream's lag.
	SidecarHead uint64    `json:"sidecar_head,omitempty"`
	Shipped     time.Time `json:"shipped,omitzero"`
	// Finding, when set, is the first contradiction found in what the
	// sidecar shipped: the stream takes nothing more.
	Finding *Finding `json:"integrity,omitempty"`
}

// Kinds of finding.
const (
	// KindCorrupt: a record whose hash is not the hash of its bytes, or
	// that does not link to the record before it in the batch.
	KindCorrupt = "corrupt"
	// KindGap: a batch that skips seqs the witness does not hold.
	KindGap = "gap"
	// KindFork: a record that differs from the one the witness holds at
	// its seq, or that does not link to it.
	KindFork = "fork"
	// KindTruncation: the sidecar's log ends before what the witness holds.
	KindTruncation = "truncation"
	// KindCheckpoint: a checkpoint whose signature does not verify with
	// the stream's key, or that names another hash than the chain's.
	KindCheckpoint = "checkpoint"
	// KindKey: a batch signed with another key than the stream's.
	KindKey = "key"
)

// Finding is an audit_integrity finding: a shipped batch that contradicts
// the chain the witness holds.
type Finding struct {
	Kind string `json:"kind"`
	// Seq is the first bad seq.
	Seq    uint64    `json:"seq"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
	// Evidence names the file the refused batch was kept in.
	Evidence string `json:"evidence,omitempty"`
}

// Proof is an accepted record's inclusion proof: everything needed to
// check, offline and with only the fleet log's public key, that the
// record is in the fleet log the checkpoint commits to.
type Proof struct {
	// Index is the record's leaf index; Size the checkpoint's tree size.
	Index uint64 `json:"index"`
	Size  uint64 `json:"size"`
	// Leaf is the leaf as the fleet log holds it (see Leaf); the record
	// is at Item.Position among its records.
	Leaf []byte `json:"leaf"`
	// Hashes are the inclusion proof's hashes (RFC 6962), leaf to root.
	Hashes [][]byte `json:"hashes"`
	// Checkpoint is the signed checkpoint (C2SP signed note) of Size.
	Checkpoint []byte `json:"checkpoint"`
	// Item is the record the leaf holds, decoded for reading.
	Item Item `json:"item"`
}

// Consistency proves that the fleet log of size To extends the one of
// size From: nothing the older checkpoint committed to was changed.
type Consistency struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes [][]byte `json:"hashes"`
	// Checkpoint is the signed checkpoint of size To.
	Checkpoint []byte `json:"checkpoint"`
}

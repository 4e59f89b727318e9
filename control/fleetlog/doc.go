// Package fleetlog is the control plane's fleet transparency log: an
// append-only Merkle tree of opaque leaves whose signed checkpoints let
// anyone holding the log's public key check, offline, that a leaf is in the
// log and that the log only ever grew.
//
// It is built on tessera with its POSIX storage, so the directory it writes
// is a tlog-tiles log (https://c2sp.org/tlog-tiles) that can be served as
// static files, and its checkpoints are signed notes in the tlog-checkpoint
// format (https://c2sp.org/tlog-checkpoint). What a leaf contains is the
// control plane's business, not this package's.
//
// # Basics
//
//	signer, _ := note.NewSigner(skey) // key named fleetlog.DefaultOrigin
//	l, err := fleetlog.Open(ctx, fleetlog.Options{Dir: dir, Signer: signer})
//	defer l.Close(ctx)
//	idx, err := l.Append(ctx, leaves)           // durable, in order
//	cp, err := l.WaitCheckpoint(ctx, idx[len(idx)-1])
//	c, err := fleetlog.ParseCheckpoint(vkey, cp)
//	p, err := l.InclusionProof(ctx, idx[0], c.Size)
//	err = fleetlog.VerifyInclusion(vkey, cp, leaves[0], idx[0], p)
//
// VerifyInclusion, VerifyConsistency and ParseCheckpoint need only the
// verifier key ("name+hash+key"); the same checks can be written with
// github.com/transparency-dev/merkle and golang.org/x/mod/sumdb/note alone,
// as docs/fleet-log.md shows.
//
// # Caveats
//
// Append returns once its leaves are sequenced and integrated, but they are
// provable against a signed checkpoint only after the next publication
// (Options.CheckpointInterval); WaitCheckpoint waits for it.
//
// The log does not deduplicate: a leaf appended twice is in it twice.
//
// Tessera keeps no goroutine after Close, but its POSIX driver logs through
// klog to standard error (a line when a new log directory is initialised).
package fleetlog

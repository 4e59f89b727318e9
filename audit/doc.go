// Package audit is STACK's append-only, hash-chained audit log, stored in
// a bbolt file, with signed checkpoints, verification, export and
// retention.
//
// # Basics
//
// Every Record is stored under its big-endian sequence number. Its stored
// value is a deterministic binary encoding that begins with the sequence
// number and the hash of the previous record, followed by the SHA-256 of
// those bytes. Changing, removing, reordering or inserting a record
// therefore breaks the chain at that place, and Verify names it. The exact
// byte layout is in docs/audit-format.md, written so that a log can be
// checked in any language with only that page and a bbolt reader.
//
//	l, err := audit.Open("audit.db", audit.Options{Signer: signer})
//	if err != nil { ... }
//	defer l.Close()
//	seq, err := l.Append(ctx, audit.Record{
//		AgentID: "billing-agent", Action: audit.ActionCredentialAccess,
//		CredentialID: "stripe", Host: "api.stripe.com", Method: "POST", Path: "/v1/charges",
//	})
//
// Append returns once the record is written to a journal next to the file
// (PATH-wal): a killed process loses nothing Append acknowledged. The
// fdatasync that makes it survive a power loss runs in the background at
// most Options.SyncInterval later, one for every record written before it
// (Options.Sync SyncInterval, the default); with SyncAlways, Append returns
// only once the record is synced. Concurrent appenders are grouped: one
// writer goroutine owned by the Log commits whatever has queued during the
// previous commit at once, in one write, so the chain stays a single line.
// The journal's records move into the bbolt file in one transaction every
// 100 ms, before reads, and on Close, and a crash's leftovers move at the
// next writable Open (see docs/audit-format.md). Under SyncAlways and
// sustained concurrent load a commit also waits up to Options.CommitDelay
// for more records, since each sync costs the same whatever its size.
//
// Enqueue hands a record to the same writer without waiting for its
// commit, for records of what has already happened where nobody should
// wait; it is chained in order with every other record, Sync waits until
// everything handed over is durable, and Close commits it before
// returning.
//
// # Checkpoints
//
// With a note.Signer, the Log writes signed checkpoints in the signed-note
// format of Go's checksum database (golang.org/x/mod/sumdb/note): every
// Options.CheckpointEvery records, while records arrive at least every
// Options.CheckpointInterval, and on Close. A checkpoint states the size of
// the log and the hash of its last record, so a cut tail or a rewritten
// chain no longer matches a signature the writer cannot forge. The records
// after the last checkpoint have no such protection: none after Close,
// those since the last checkpoint while the writer runs or after it was
// killed. Verify counts them in Report.Uncovered.
//
// # Retention
//
// Prune removes the oldest records and keeps an anchor (the sequence
// number and hash of the last removed record, signed when a signer is set)
// from which the rest of the chain still verifies.
//
// # Caveats
//
// bbolt lets one process open a file for writing and blocks other
// processes meanwhile, so read commands either share a running writer's Log
// (in process, or through a snapshot from WriteSnapshot) or open the file
// read-only when no writer holds it. Open never waits longer than
// Options.OpenTimeout for the file lock.
//
// Records never carry secrets: a credential appears by name and
// fingerprint only.
package audit

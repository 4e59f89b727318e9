// Package fleet is the control plane's witness of its sidecars' audit
// chains. It checks every batch a sidecar ships against the chain it
// already holds for that log (hash, link, order, checkpoint signatures),
// appends what is new to the fleet transparency log, cosigns the sidecar
// checkpoints it verified, keeps a batch that contradicts the chain as
// evidence instead of merging it, and indexes accepted records so that
// proofs and queries across the fleet answer from one place.
//
// # Basics
//
// A sidecar log is a stream, named by the log's identity (audit.Log.ID)
// and bound, on its first batch, to the shipping sidecar's agent and to
// the note key its checkpoints are signed with. Shipping is at least once
// and idempotent by (log, seq): a record the witness holds is compared,
// not appended again, which is how a byte flipped, a tail cut or a chain
// rewritten in the sidecar's file is found when the sidecar ships again.
//
// Every accepted record, every stream's opening and every cosigned
// checkpoint is a leaf of the fleet log (see Leaf); the index (a bbolt
// file beside it) is derived from the leaves and rebuilt from them after
// a crash, so the log stays the one source of truth.
//
// # Caveats
//
// One process appends to the fleet log: with several control plane
// replicas, one of them serves it (see docs/control-plane.md). A stream
// with a finding takes nothing more: its sidecar keeps its records until
// an operator looks at the evidence.
package fleet

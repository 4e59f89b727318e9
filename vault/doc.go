// Package vault keeps credentials at rest: each secret encrypted under its
// own data key, each data key wrapped by a KMS, all in one bbolt file or
// in a control store that several control-plane replicas share.
//
// # Basics
//
//	k, _ := kms.Open(ctx, "local://kms.key", kms.Options{BaseDir: home})
//	v, err := vault.Open(filepath.Join(home, "vault.db"), k, vault.Options{})
//	defer v.Close()
//	render, _ := vault.ParseRender("bearer")
//	v.Put(ctx, "stripe", secret, vault.PutOptions{Hosts: []string{"api.stripe.com"}, Render: render})
//	cred, secret, err := v.Get(ctx, "stripe")
//
// A credential has a name (the agent sees the placeholder stk_ph_NAME), the
// hosts it may be sent to, a render form (bearer, basic,
// header:NAME=TEMPLATE, query:NAME), a version, a creation time and a
// fingerprint. Listings never carry the secret.
//
// # Envelope encryption
//
// Each credential version gets a fresh random AES-256 data key. The data
// key is wrapped by the KMS with additional data naming the credential and
// version ("stack-vault/v1/data-key", name, version), so the KMS refuses a
// wrapped key moved to another record. The secret is sealed with
// AES-256-GCM under the data key with additional data binding the format
// version, name, version, hosts, render form, creation time and
// fingerprint: swapping ciphertexts between records, or editing a record's
// hosts to send its secret elsewhere, makes decryption fail (ErrCorrupt or
// ErrUnwrap, naming the credential) and changes nothing.
//
// # File layout
//
// Bucket "meta" holds "format" = "1" and "fingerprint_salt" (JSON
// {format, kms, wrapped}: the salt wrapped by the KMS). Bucket
// "credentials" maps each name to one JSON record:
//
//	{"format":1, "name":"stripe", "version":2, "hosts":["api.stripe.com"],
//	 "render":"bearer", "created":"2026-11-25T10:00:00Z",
//	 "fingerprint":"hmac-sha256:…", "kms":"awskms://alias/stack",
//	 "wrapped_key":"<base64>", "nonce":"<base64>", "ciphertext":"<base64>"}
//
// Only the current version is kept: Rotate replaces the record, dropping
// the previous version's data key and ciphertext in the same transaction.
// Decoding refuses unknown fields, other formats, and a record whose name
// differs from its key.
//
// # In a control store
//
// OpenStore keeps the same records in a control/store Store (etcd, for
// replicas) under StorePrefix: "vaultdata/records/NAME" holds the JSON
// record above, "vaultdata/meta/format" and
// "vaultdata/meta/fingerprint_salt" the meta values. The store holds only
// what the file would: wrapped keys and ciphertexts. Every write is a
// compare-and-swap on the revision read, so replicas writing at once lose
// nothing: of two Puts of one name one gets ErrExists; a Rotate or Replace
// that meets another replica's change starts again from it, so each gets a
// version of its own; the first replica to need a fingerprint salt makes
// it and the others use that one. Get reads the record each time and uses
// the cache only to skip the KMS for the version it has, so a change
// through any replica is served at once. WriteSnapshot writes a vault file
// of the records as of one revision; Rewrap and RewrapCopy refuse: every
// replica would have to switch KMS keys at the same instant.
//
// # Fingerprints
//
// A fingerprint is "hmac-sha256:" and 24 hex digits of
// HMAC-SHA256(salt, secret), where salt is 32 random bytes made once per
// vault and stored wrapped by the KMS. It is not a plain hash because
// fingerprints go to logs and audit records read by many: a plain SHA-256
// of a low-entropy secret (a short password, a guessable key) can be
// confirmed or brute-forced offline by anyone holding the log. With a
// secret salt only someone who can use the KMS can test a guess.
//
// # Cache
//
// Get keeps decrypted secrets in memory for Options.CacheTTL (default
// 60 s), at most Options.CacheSize of them (default 1024, least recently
// used evicted, evicted secrets zeroed). While the KMS is down, a cached
// secret is still served until its TTL runs out; anything else fails
// closed with ErrKMSUnavailable naming the KMS URI. Put, Rotate and Delete
// drop the name from the cache.
//
// # Caveats
//
// bbolt lets one process open the file for writing; Open waits at most
// Options.OpenTimeout for the lock and then fails with ErrLocked. A vault
// in a store has no lock: every replica with the same KMS key uses it. A KMS
// call is made for every uncached Get, Put and Rotate, and for every
// record on Check and Rewrap.
package vault

package audit_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/stackctl/stack/audit"
)

func Example() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "stack-audit")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)

	ctx := context.Background()
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{Signer: signer, CheckpointEvery: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	for _, host := range []string{"api.stripe.com", "api.stripe.com", "evil.example"} {
		seq, err := l.Append(ctx, audit.Record{
			AgentID: "billing-bot", Action: audit.ActionCredentialAccess,
			CredentialID: "stripe", Host: host, Method: "POST", Path: "/v1/charges",
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("durable:", seq)
	}
	rep, err := l.Verify(ctx, note.VerifierList(verifier))
	fmt.Println(rep.Records, rep.LastCheckpoint.Size, err)
	// Output:
	// durable: 1
	// durable: 2
	// durable: 3
	// 3 2 <nil>
}

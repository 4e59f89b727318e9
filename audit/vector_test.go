package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// vectorRecord is the test vector printed in docs/audit-format.md.
func vectorRecord() Record {
	return Record{
		Seq: 1, EventID: "0b7f5a8e-3c1d-4e2f-9a6b-1c2d3e4f5a6b", TimestampMS: 1764072000000,
		AgentID: "billing-agent", PassportJTI: "p-123", Action: ActionCredentialAccess,
		CredentialID: "stripe", CredentialFingerprint: "sha256:9f86d081",
		Host: "api.stripe.com", Method: "POST", Path: "/v1/charges", Status: 200,
		BytesIn: 512, BytesOut: 2048, DurationMS: 87, PrevHash: GenesisHash,
	}
}

// The values below are also in docs/audit-format.md; an implementation in
// another language checks itself against them. They must never change.
const (
	vectorGenesis = "e59ed8049f5fe008df6b7a940cc82e73573657a86d1fc2f1ee875019b666557a"
	vectorBody    = "010000000000000001e59ed8049f5fe008df6b7a940cc82e73573657a86d1fc2f1ee875019b666557a0000019abae28a002430623766356138652d336331642d346532662d396136622d3163326433653466356136620d62696c6c696e672d6167656e7405702d3132331163726564656e7469616c5f616363657373067374726970650f7368613235363a39663836643038310e6170692e7374726970652e636f6d04504f53540b2f76312f636861726765730000000000000000000000c8000000000000020000000000000008000000000000000057"
	vectorHash    = "970e2d358796ed7c024b36f2ee25373e0b1268beae23ace3d9e10d6ea2ddcd9d"
)

func TestFormatVector(t *testing.T) {
	if got := sha256.Sum256([]byte("stack-audit-v1 genesis")); Hash(got) != GenesisHash {
		t.Fatal("GenesisHash is not SHA-256 of the genesis string")
	}
	r := vectorRecord()
	v := EncodeStored(&r)
	if GenesisHash.String() != vectorGenesis {
		t.Errorf("genesis %s, want %s", GenesisHash, vectorGenesis)
	}
	if hex.EncodeToString(v[:len(v)-32]) != vectorBody {
		t.Errorf("body differs from the documented vector")
	}
	if r.Hash.String() != vectorHash {
		t.Errorf("hash %s, want %s", r.Hash, vectorHash)
	}
}

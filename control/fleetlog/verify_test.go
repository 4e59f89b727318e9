package fleetlog_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"github.com/stackctl/stack/control/fleetlog"
)

func TestParseCheckpointRefuses(t *testing.T) {
	k := newKey(t, fleetlog.DefaultOrigin)
	other := newKey(t, fleetlog.DefaultOrigin)
	root := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	good := k.sign(t, fmt.Sprintf("%s\n12\n%s\n", fleetlog.DefaultOrigin, root))
	c, err := fleetlog.ParseCheckpoint(k.verifier, good)
	if err != nil || c.Size != 12 || c.Origin != fleetlog.DefaultOrigin || !bytes.Equal(c.Root, bytes.Repeat([]byte{7}, 32)) {
		t.Fatalf("good checkpoint: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		name string
		key  string
		ck   []byte
		want error
	}{
		{"bad key", "not a key", good, fleetlog.ErrKey},
		{"another key's signature", other.verifier, good, fleetlog.ErrSignature},
		{"body changed after signing", k.verifier, bytes.Replace(good, []byte("\n12\n"), []byte("\n13\n"), 1), fleetlog.ErrSignature},
		{"another origin", k.verifier, k.sign(t, "example.com/other\n12\n"+root+"\n"), fleetlog.ErrCheckpoint},
		{"size not a number", k.verifier, k.sign(t, fleetlog.DefaultOrigin+"\ntwelve\n"+root+"\n"), fleetlog.ErrCheckpoint},
		{"short root", k.verifier, k.sign(t, fleetlog.DefaultOrigin+"\n12\nAAAA\n"), fleetlog.ErrCheckpoint},
		{"not a note", k.verifier, []byte("hello"), fleetlog.ErrCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fleetlog.ParseCheckpoint(tc.key, tc.ck)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParseCheckpoint: whatever the bytes, the parser answers with a
// checkpoint the key signed or an error, never a panic.
func FuzzParseCheckpoint(f *testing.F) {
	k := newKey(f, fleetlog.DefaultOrigin)
	root := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	f.Add(k.sign(f, fmt.Sprintf("%s\n12\n%s\n", fleetlog.DefaultOrigin, root)))
	f.Add([]byte(fleetlog.DefaultOrigin + "\n1\n" + root + "\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, ck []byte) {
		c, err := fleetlog.ParseCheckpoint(k.verifier, ck)
		if err == nil && (c.Origin != fleetlog.DefaultOrigin || len(c.Root) != 32) {
			t.Fatalf("accepted %q as %+v", ck, c)
		}
	})
}

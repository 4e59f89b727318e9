package stacktest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// childEnvDropped are the variables no child process inherits: they would
// send its traffic around the proxy or make it trust other CAs.
var childEnvDropped = map[string]bool{
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "ALL_PROXY": true, "NO_PROXY": true,
	"REQUESTS_CA_BUNDLE": true, "CURL_CA_BUNDLE": true, "SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"NODE_EXTRA_CA_CERTS": true, "NODE_OPTIONS": true,
}

// ChildEnv returns the environment of a child process: this process's,
// without proxy and CA settings (in any case) and STACK_* settings that
// would change what is tested, followed by extra.
func ChildEnv(extra ...string) []string {
	return ChildEnvWithout(nil, extra...)
}

// ChildEnvWithout is ChildEnv that also leaves out the variables whose
// names start with one of prefixes, such as the API settings an example
// agent reads.
func ChildEnvWithout(prefixes []string, extra ...string) []string {
	var out []string
next:
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if childEnvDropped[strings.ToUpper(k)] || strings.HasPrefix(k, "STACK_") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// RandomHex returns n random bytes in hex, for secrets no test can guess
// and so none can pass by accident.
func RandomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

package mint

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
)

// testKeys are RSA keys shared by the tests: generating one takes a while
// under -race.
var testKeys struct {
	once sync.Once
	keys [2]*rsa.PrivateKey
	err  error
}

// testRSAKey returns shared test key i (0 or 1).
func testRSAKey(tb testing.TB, i int) *rsa.PrivateKey {
	tb.Helper()
	testKeys.once.Do(func() {
		for j := range testKeys.keys {
			testKeys.keys[j], testKeys.err = rsa.GenerateKey(rand.Reader, 2048)
			if testKeys.err != nil {
				return
			}
		}
	})
	if testKeys.err != nil {
		tb.Fatal(testKeys.err)
	}
	return testKeys.keys[i]
}

func pkcs8PEM(tb testing.TB, k any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// randomToken is an opaque token with prefix, as issuers hand out.
func randomToken(prefix string) string {
	return prefix + strings.ToLower(rand.Text())
}

package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// Files of the interception CA in the data directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.json"
)

func (a *app) caCertPath() string { return filepath.Join(a.home(), caCertFile) }
func (a *app) caKeyPath() string  { return filepath.Join(a.home(), caKeyFile) }

// holdsCertificate reports whether data holds a PEM certificate that parses.
func holdsCertificate(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err == nil {
				return true
			}
		}
	}
}

func newCACmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The proxy's interception CA, which agents must trust",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "export",
		Short: "Print the interception CA certificate (PEM) for agents to trust",
		Long: `export prints the certificate of the CA that signs the certificates the
proxy presents to agents for intercepted HTTPS. Give it to the agent's
runtime as an extra trusted root; its private key never leaves the data
directory, where it is stored wrapped by the KMS.`,
		Example: `  stack ca export > stack-ca.pem
  curl --proxy http://127.0.0.1:8080 --cacert stack-ca.pem https://api.stripe.com/v1/balance
  REQUESTS_CA_BUNDLE=stack-ca.pem python agent.py   # requests
  SSL_CERT_FILE=stack-ca.pem python agent.py        # urllib, http.client, httpx (openai, anthropic)
  NODE_EXTRA_CA_CERTS=stack-ca.pem node agent.js`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cert, err := os.ReadFile(a.caCertPath())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no CA at %s: run `stack init` first", a.caCertPath())
			}
			if err != nil {
				return err
			}
			if !holdsCertificate(cert) {
				return fmt.Errorf("%s holds no PEM certificate (empty or damaged), and the proxy cannot start with it either: restore it from a backup, or remove it and %s and run `stack init` to make a new CA that agents must then trust", a.caCertPath(), a.caKeyPath())
			}
			_, err = a.stdout.Write(cert)
			return err
		},
	})
	return cmd
}

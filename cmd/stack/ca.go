package main

import (
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
  REQUESTS_CA_BUNDLE=stack-ca.pem python agent.py
  NODE_EXTRA_CA_CERTS=stack-ca.pem node agent.js`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			pem, err := os.ReadFile(a.caCertPath())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no CA at %s: run `stack init` first", a.caCertPath())
			}
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(pem)
			return err
		},
	})
	return cmd
}

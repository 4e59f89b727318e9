package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/console"
)

// withConsole serves the web console at /ui beside the API, when
// control.console.enabled.
func (a *app) withConsole(ctx context.Context, srv *control.Server, live *console.Live, token string) (http.Handler, error) {
	api := srv.Handler()
	cc := a.cfg.Control.Console
	if !cc.Enabled {
		return api, nil
	}
	opts := console.Options{
		Backend: srv, Live: live, Token: token, SessionTTL: cc.SessionTTL,
		Log: a.log.Named("console"),
	}
	if o := cc.OIDC; o.Issuer != "" {
		secret := ""
		if o.ClientSecretFile != "" {
			b, err := os.ReadFile(o.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("control.console.oidc.client_secret_file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		roots, err := withPEM(systemRoots(), "control.console.oidc.ca", o.CA)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true, IdleConnTimeout: time.Minute,
		}}
		opts.OIDC = &console.OIDCOptions{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, RedirectURL: o.RedirectURL,
			Admins: o.Admins, Viewers: o.Viewers, HTTPClient: client,
		}
	}
	con, err := console.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	a.log.Info("serving the web console", zap.String("path", console.Path), zap.Bool("oidc", opts.OIDC != nil))
	mux := http.NewServeMux()
	mux.Handle("/ui/", con)
	mux.Handle("/ui", con)
	mux.Handle("/", api)
	return mux, nil
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/vault"
)

// kindFlags are the flags of `vault put` that describe a minting kind.
type kindFlags struct {
	kind string
	// oauth2-client-credentials
	tokenURL, clientID, audience, authStyle string
	// oauth2-client-credentials, gcp-service-account
	scopes []string
	// github-app
	appID, apiURL  string
	installationID int64
	permissions    []string
	repositories   []string
	// aws-sts
	roleARN, region, accessKeyID, stsEndpoint, externalID string
	duration                                              time.Duration
}

// kindFlagOwners says which kinds each kind flag belongs to, so that a
// flag given with another kind is an error rather than ignored.
var kindFlagOwners = map[string][]string{
	"token-url": {mint.KindOAuth2}, "client-id": {mint.KindOAuth2}, "audience": {mint.KindOAuth2}, "auth-style": {mint.KindOAuth2},
	"scope":  {mint.KindOAuth2, mint.KindGCP},
	"app-id": {mint.KindGitHub}, "installation-id": {mint.KindGitHub}, "api-url": {mint.KindGitHub},
	"permission": {mint.KindGitHub}, "repository": {mint.KindGitHub},
	"role-arn": {mint.KindAWS}, "region": {mint.KindAWS}, "access-key-id": {mint.KindAWS},
	"sts-endpoint": {mint.KindAWS}, "external-id": {mint.KindAWS}, "duration": {mint.KindAWS},
}

func (k *kindFlags) register(f *pflag.FlagSet) {
	f.StringVar(&k.kind, "kind", mint.KindStatic, "the credential's kind: "+strings.Join(mint.Kinds, ", "))
	f.StringVar(&k.tokenURL, "token-url", "", "oauth2-client-credentials: the token endpoint (https)")
	f.StringVar(&k.clientID, "client-id", "", "oauth2-client-credentials: the client id (the client secret is the secret)")
	f.StringVar(&k.audience, "audience", "", "oauth2-client-credentials: an audience parameter for the token request (Auth0 and others)")
	f.StringVar(&k.authStyle, "auth-style", "", "oauth2-client-credentials: how the client authenticates, header (HTTP Basic) or params (in the body); default: try the header, then the body")
	f.StringArrayVar(&k.scopes, "scope", nil, "oauth2-client-credentials, gcp-service-account: a scope the credential may be minted with (repeatable; grants narrow it)")
	f.StringVar(&k.appID, "app-id", "", "github-app: the app's id or client id")
	f.Int64Var(&k.installationID, "installation-id", 0, "github-app: the installation tokens are minted for")
	f.StringVar(&k.apiURL, "api-url", "", "github-app: the API (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3)")
	f.StringArrayVar(&k.permissions, "permission", nil, "github-app: NAME=read|write|admin, the most a token may have (repeatable)")
	f.StringArrayVar(&k.repositories, "repository", nil, "github-app: a repository a token may reach (repeatable; default all the installation's)")
	f.StringVar(&k.roleARN, "role-arn", "", "aws-sts: the role each agent's session assumes")
	f.StringVar(&k.region, "region", "", "aws-sts: the STS region")
	f.StringVar(&k.accessKeyID, "access-key-id", "", "aws-sts: the base credential's access key id (its secret access key is the secret)")
	f.StringVar(&k.stsEndpoint, "sts-endpoint", "", "aws-sts: a non-default STS endpoint")
	f.StringVar(&k.externalID, "external-id", "", "aws-sts: the external id the role's trust policy asks for")
	f.DurationVar(&k.duration, "duration", 0, "aws-sts: session length (AWS's minimum, 15m, is also STACK's maximum)")
}

// params returns the kind's parameters from the flags, refusing flags of
// another kind. Whether they are complete and well formed is the mint
// package's to say when the vault stores them.
func (k *kindFlags) params(f *pflag.FlagSet) (json.RawMessage, error) {
	if !mint.Known(k.kind) {
		return nil, fmt.Errorf("--kind %q: want one of %s", k.kind, strings.Join(mint.Kinds, ", "))
	}
	var wrong []string
	f.Visit(func(fl *pflag.Flag) {
		if owners, ok := kindFlagOwners[fl.Name]; ok && !slices.Contains(owners, k.kind) {
			wrong = append(wrong, "--"+fl.Name)
		}
	})
	if len(wrong) > 0 {
		return nil, fmt.Errorf("%s: not a flag of kind %s", strings.Join(wrong, ", "), k.kind)
	}
	p := map[string]any{}
	set := func(key string, v any, ok bool) {
		if ok {
			p[key] = v
		}
	}
	switch k.kind {
	case mint.KindStatic:
		return nil, nil
	case mint.KindOAuth2:
		set("token_url", k.tokenURL, k.tokenURL != "")
		set("client_id", k.clientID, k.clientID != "")
		set("audience", k.audience, k.audience != "")
		set("auth_style", k.authStyle, k.authStyle != "")
		set("scopes", k.scopes, len(k.scopes) > 0)
	case mint.KindGCP:
		set("scopes", k.scopes, len(k.scopes) > 0)
	case mint.KindGitHub:
		set("app_id", k.appID, k.appID != "")
		set("installation_id", k.installationID, k.installationID != 0)
		set("api_url", k.apiURL, k.apiURL != "")
		set("repositories", k.repositories, len(k.repositories) > 0)
		if len(k.permissions) > 0 {
			perms := map[string]string{}
			for _, kv := range k.permissions {
				name, level, ok := strings.Cut(kv, "=")
				if !ok || name == "" || level == "" {
					return nil, fmt.Errorf("--permission %q: want NAME=LEVEL, such as contents=read", kv)
				}
				perms[name] = level
			}
			p["permissions"] = perms
		}
	case mint.KindAWS:
		set("role_arn", k.roleARN, k.roleARN != "")
		set("region", k.region, k.region != "")
		set("access_key_id", k.accessKeyID, k.accessKeyID != "")
		set("sts_endpoint", k.stsEndpoint, k.stsEndpoint != "")
		set("external_id", k.externalID, k.externalID != "")
		if k.duration != 0 {
			if k.duration%time.Second != 0 {
				return nil, fmt.Errorf("--duration %s: whole seconds", k.duration)
			}
			p["duration_seconds"] = int64(k.duration / time.Second)
		}
	}
	return json.Marshal(p)
}

// defaultRender is the render form of a kind when --render is not given:
// aws-sts re-signs; the token kinds send a bearer token.
func defaultRender(kind string) (vault.Render, bool) {
	switch kind {
	case mint.KindAWS:
		return vault.Render{Kind: vault.RenderSigV4}, true
	case mint.KindOAuth2, mint.KindGCP, mint.KindGitHub:
		return vault.Render{Kind: vault.RenderBearer}, true
	}
	return vault.Render{}, false
}

// readSecretFile reads root material (a key file) whole.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError(fmt.Errorf("--from-file: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretInput+1))
	if err != nil {
		return nil, fmt.Errorf("--from-file %s: %w", path, err)
	}
	if len(b) > maxSecretInput {
		return nil, usageError(fmt.Errorf("--from-file %s: longer than 64 KiB", path))
	}
	if len(b) == 0 {
		return nil, usageError(errors.New("--from-file " + path + ": empty"))
	}
	return b, nil
}

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
	var p any
	switch k.kind {
	case mint.KindStatic:
		return nil, nil
	case mint.KindOAuth2:
		p = mint.OAuth2Params{TokenURL: k.tokenURL, ClientID: k.clientID, Scopes: k.scopes, Audience: k.audience, AuthStyle: k.authStyle}
	case mint.KindGCP:
		p = mint.GCPParams{Scopes: k.scopes}
	case mint.KindGitHub:
		gp := mint.GitHubParams{AppID: k.appID, InstallationID: k.installationID, APIURL: k.apiURL, Repositories: k.repositories}
		for _, kv := range k.permissions {
			name, level, ok := strings.Cut(kv, "=")
			if !ok || name == "" || level == "" {
				return nil, fmt.Errorf("--permission %q: want NAME=LEVEL, such as contents=read", kv)
			}
			if gp.Permissions == nil {
				gp.Permissions = map[string]string{}
			}
			gp.Permissions[name] = level
		}
		p = gp
	case mint.KindAWS:
		if k.duration%time.Second != 0 {
			return nil, fmt.Errorf("--duration %s: whole seconds", k.duration)
		}
		p = mint.AWSParams{RoleARN: k.roleARN, Region: k.region, AccessKeyID: k.accessKeyID, STSEndpoint: k.stsEndpoint,
			ExternalID: k.externalID, DurationSeconds: int(k.duration / time.Second)}
	}
	return json.Marshal(p)
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

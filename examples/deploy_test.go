package examples

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of the compose specification the example uses.
// Decoding is strict, so a misspelt key fails here rather than in front of
// a user (docker is not on the CI machine to run the file).
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `json:"subnet"`
			} `json:"config"`
		} `json:"ipam"`
	} `json:"networks"`
}

type composeService struct {
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	WorkingDir  string            `json:"working_dir"`
	Environment map[string]string `json:"environment"`
	Volumes     []string          `json:"volumes"`
	Ports       []string          `json:"ports"`
	NetworkMode string            `json:"network_mode"`
	Networks    map[string]*struct {
		IPv4Address string `json:"ipv4_address"`
	} `json:"networks"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
	Profiles    []string `json:"profiles"`
	ReadOnly    bool     `json:"read_only"`
	CapDrop     []string `json:"cap_drop"`
	SecurityOpt []string `json:"security_opt"`
	Restart     string   `json:"restart"`
}

// flagValue returns the value of --name=VALUE or -name=VALUE in args, all
// of them when repeated.
func flagValues(args []string, name string) []string {
	var out []string
	for _, a := range args {
		for _, p := range []string{"--" + name + "=", "-" + name + "="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// The compose file parses, and its services are wired to each other as
// its comments and README.md say.
func TestComposeWiring(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"sidecar", "agent", "upstream", "agent-build", "stack"} {
		if _, ok := f.Services[name]; !ok {
			t.Fatalf("service %s is missing", name)
		}
	}
	sidecar, agent, upstream := f.Services["sidecar"], f.Services["agent"], f.Services["upstream"]

	if sidecar.Build == nil || sidecar.Build.Dockerfile != "Dockerfile" || sidecar.Build.Context != ".." {
		t.Error("the sidecar must build from the repository's Dockerfile")
	}
	if len(sidecar.Command) == 0 || sidecar.Command[0] != "proxy" {
		t.Errorf("sidecar command %q does not run `stack proxy`", sidecar.Command)
	}

	// The agent reaches the proxy on loopback because it shares the
	// sidecar's network namespace.
	if agent.NetworkMode != "service:sidecar" {
		t.Errorf("agent network_mode %q, want service:sidecar", agent.NetworkMode)
	}
	listen := flagValues(sidecar.Command, "listen")
	if len(listen) != 1 {
		t.Fatalf("sidecar --listen: %q", listen)
	}
	lp, err := netip.ParseAddrPort(listen[0])
	if err != nil || !lp.Addr().IsLoopback() {
		t.Errorf("sidecar --listen %q: want a loopback address (the agent shares the namespace)", listen[0])
	}
	if got := agent.Environment["HTTPS_PROXY"]; got != "http://"+listen[0] {
		t.Errorf("agent HTTPS_PROXY %q, want http://%s", got, listen[0])
	}
	if !slices.Contains(strings.Split(agent.Environment["NO_PROXY"], ","), "localhost") {
		t.Errorf("agent NO_PROXY %q lacks localhost", agent.Environment["NO_PROXY"])
	}
	for k, v := range agent.Environment {
		if strings.HasSuffix(k, "_API_KEY") && !strings.HasPrefix(v, "stk_ph_") {
			t.Errorf("agent %s=%q is not a placeholder", k, v)
		}
		if strings.Contains(v, "STRIPE_SECRET_KEY") {
			t.Errorf("agent %s refers to the real key", k)
		}
	}
	ca := agent.Environment["SSL_CERT_FILE"]
	if ca == "" || !slices.ContainsFunc(agent.Volumes, func(v string) bool { return strings.Contains(v, ":"+ca+":") || strings.HasSuffix(v, ":"+ca) }) {
		t.Errorf("agent SSL_CERT_FILE %q is not a mounted file", ca)
	}
	for _, v := range agent.Volumes {
		if strings.HasPrefix(v, "stack-data:") {
			t.Error("the agent mounts the sidecar's data directory")
		}
	}

	// The sidecar sends both API hosts to the upstream's fixed address,
	// which the egress guard is told to allow and the network contains.
	up := upstream.Networks["stack"]
	if up == nil || up.IPv4Address == "" {
		t.Fatal("upstream has no fixed address on network stack")
	}
	upAddr := netip.MustParseAddr(up.IPv4Address)
	resolves := flagValues(sidecar.Command, "resolve")
	for _, host := range []string{"api.stripe.com", "api.openai.com"} {
		if !slices.Contains(resolves, host+"="+up.IPv4Address) {
			t.Errorf("sidecar does not --resolve %s to the upstream (%s): %q", host, up.IPv4Address, resolves)
		}
	}
	allowed := false
	for _, c := range flagValues(sidecar.Command, "allow-cidr") {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(upAddr) {
			allowed = true
		}
	}
	if !allowed {
		t.Errorf("no --allow-cidr covers the upstream's address %s", upAddr)
	}
	inSubnet := false
	for _, c := range f.Networks["stack"].IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(upAddr) {
			inSubnet = true
		}
	}
	if !inSubnet {
		t.Errorf("the upstream's address %s is outside network stack's subnets", upAddr)
	}

	// The upstream's CA reaches the sidecar's --upstream-ca through a
	// shared volume.
	upCA := flagValues(sidecar.Command, "upstream-ca")
	caOut := flagValues(upstream.Command, "ca-out")
	if len(upCA) != 1 || len(caOut) != 1 || path.Base(upCA[0]) != path.Base(caOut[0]) {
		t.Fatalf("sidecar --upstream-ca %q and upstream -ca-out %q do not name the same file", upCA, caOut)
	}
	if volumeAt(sidecar.Volumes, path.Dir(upCA[0])) == "" || volumeAt(sidecar.Volumes, path.Dir(upCA[0])) != volumeAt(upstream.Volumes, path.Dir(caOut[0])) {
		t.Errorf("the upstream CA directory is not one volume shared by upstream and sidecar")
	}
	if upstream.Healthcheck == nil || sidecar.DependsOn["upstream"].Condition != "service_healthy" {
		t.Error("the sidecar must wait for the upstream's CA (healthcheck + service_healthy)")
	}

	// Every named volume a service mounts is declared.
	for name, s := range f.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				continue // a bind mount
			}
			if _, ok := f.Volumes[src]; !ok {
				t.Errorf("service %s mounts volume %q, which is not declared", name, src)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
		}
	}
	for _, name := range []string{"sidecar", "agent"} {
		s := f.Services[name]
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("service %s: want read_only: true and cap_drop: [ALL]", name)
		}
	}
}

// volumeAt returns the named volume mounted at dir, if any.
func volumeAt(volumes []string, dir string) string {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dir {
			return parts[0]
		}
	}
	return ""
}

// dockerInstr is one Dockerfile instruction.
type dockerInstr struct {
	cmd, args string
}

// parseDockerfile reads instructions, joining continuation lines and
// dropping comments.
func parseDockerfile(t *testing.T, file string) []dockerInstr {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstr{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Dockerfile builds a static binary in a Go stage and ships it alone
// on a distroless base, as a non-root user, with the documented defaults.
func TestDockerfile(t *testing.T) {
	instrs := parseDockerfile(t, "../Dockerfile")
	var stages []string
	var final []dockerInstr
	args := map[string]string{}
	for _, in := range instrs {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case "FROM":
			stages = append(stages, in.args)
			final = nil
		case "ADD":
			if strings.Contains(in.args, "://") {
				t.Errorf("ADD of a remote URL: %s", in.args)
			}
		}
		final = append(final, in)
	}
	if len(stages) != 2 {
		t.Fatalf("stages %q, want a build stage and a final stage", stages)
	}
	if !strings.HasPrefix(stages[0], "golang:${GO_VERSION}") || args["GO_VERSION"] != "1.26" {
		t.Errorf("build stage %q (GO_VERSION %q), want golang:1.26", stages[0], args["GO_VERSION"])
	}
	if stages[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage %q, want gcr.io/distroless/static-debian12:nonroot", stages[1])
	}
	build := false
	for _, in := range instrs {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = true
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/stack"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("go build lacks %s: %s", want, in.args)
				}
			}
		}
	}
	if !build {
		t.Error("no RUN go build")
	}
	want := map[string]string{
		"USER":       "65532:65532",
		"ENV":        "STACK_HOME=/var/lib/stack",
		"EXPOSE":     "8080 9090",
		"ENTRYPOINT": `["/stack"]`,
		"CMD":        `["proxy"]`,
	}
	got := map[string]string{}
	for _, in := range final {
		got[in.cmd] = in.args
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("final stage %s %q, want %q", k, got[k], v)
		}
	}
	var entry []string
	if err := json.Unmarshal([]byte(got["ENTRYPOINT"]), &entry); err != nil || len(entry) != 1 {
		t.Errorf("ENTRYPOINT must be exec form: %q", got["ENTRYPOINT"])
	}
	if u := got["USER"]; strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("USER %q is root", u)
	}
}

package examples

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of the compose specification the example uses.
// Decoding is strict, so a misspelt key fails here rather than in front of
// a user (docker is not on the CI machine to run the file).
type composeFile struct {
	Name string `json:"name"`
	// Fragments merged into services with <<: (YAML merge keys). They are
	// decoded as services too, so that a typo in one fails here. (The
	// strict decoder refuses a service that overrides a key of its
	// fragment: add keys, or move the key out of the fragment.)
	XSidecar composeService `json:"x-sidecar"`
	XAgent   composeService `json:"x-agent"`
	// docker-compose.handoff.yml's fragment.
	XHandoffSidecar composeService            `json:"x-handoff-sidecar"`
	Services        map[string]composeService `json:"services"`
	Volumes         map[string]struct{}       `json:"volumes"`
	Networks        map[string]struct {
		Internal bool `json:"internal"`
		IPAM     struct {
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
		Target     string `json:"target"`
	} `json:"build"`
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	WorkingDir  string            `json:"working_dir"`
	User        string            `json:"user"`
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
	CapAdd      []string `json:"cap_add"`
	SecurityOpt []string `json:"security_opt"`
	Restart     string   `json:"restart"`
}

// mount is one entry of a service's volumes: SOURCE:TARGET[:ro].
type mount struct {
	source, target string
	readOnly       bool
}

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		m := mount{source: parts[0]}
		if len(parts) > 1 {
			m.target = parts[1]
		}
		m.readOnly = len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
		out = append(out, m)
	}
	return out
}

// mountAt returns the mount whose target is dir.
func (s composeService) mountAt(dir string) (mount, bool) {
	for _, m := range s.mounts() {
		if m.target == dir {
			return m, true
		}
	}
	return mount{}, false
}

// mountsVolume reports whether s mounts the named volume anywhere.
func (s composeService) mountsVolume(name string) bool {
	return slices.ContainsFunc(s.mounts(), func(m mount) bool { return m.source == name })
}

// fileVolume returns the mount that holds file.
func (s composeService) fileVolume(file string) (mount, bool) {
	for _, m := range s.mounts() {
		if m.target == file || strings.HasPrefix(file, strings.TrimSuffix(m.target, "/")+"/") {
			return m, true
		}
	}
	return mount{}, false
}

// runsProxy: the service runs `stack proxy` (after any global flags).
func (s composeService) runsProxy() bool {
	for _, a := range s.Command {
		if !strings.HasPrefix(a, "-") {
			return a == "proxy"
		}
	}
	return false
}

func (s composeService) hardened() bool {
	return s.ReadOnly && slices.Contains(s.CapDrop, "ALL")
}

// flagValues returns the value of --name=VALUE or -name=VALUE in args,
// all of them when repeated.
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

// oneFlag returns the single value of --name, failing the test without
// exactly one.
func oneFlag(t *testing.T, who string, args []string, name string) string {
	t.Helper()
	v := flagValues(args, name)
	if len(v) != 1 {
		t.Fatalf("%s: want one --%s, have %q", who, name, v)
	}
	return v[0]
}

// Where compose-setup.sh reads and writes, under the directories the
// init and enroll services mount: the setup test runs the script and
// checks these files appear; TestComposeWiring checks the services mount
// them where the sidecars and agents look.
const (
	setupScript    = "compose-setup.sh"
	setupMount     = "/setup.sh"
	setupDataDir   = "/data"          // + /NAME: sidecar NAME's data directory, /data/control the control plane's
	setupExportDir = "/export"        // + /control-ca, /NAME-ca: the CA certificates, each as ca.pem
	setupJoinToken = "join-token"     // in a sidecar's data directory: its join token
	stackHome      = "/var/lib/stack" // the image's STACK_HOME
	controlService = "control"        // the control plane's service, and the name its certificate is for
	controlDataDir = setupDataDir + "/control"
	controlCADir   = setupExportDir + "/control-ca"
)

func loadCompose(t *testing.T) *composeFile { return loadComposeFile(t, "docker-compose.yml") }

func loadComposeFile(t *testing.T, name string) *composeFile {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &f
}

// The compose file parses, and its services are wired to each other as
// its comments and README.md say: a control plane that only the sidecars
// reach, two sidecars that join it with the CA and a join token, and two
// agents that hold placeholders only.
func TestComposeWiring(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{controlService, "init", "enroll", "bot", "bot-sidecar", "reporter", "reporter-sidecar", "upstream", "agent-build"} {
		if _, ok := f.Services[name]; !ok {
			t.Fatalf("service %s is missing", name)
		}
	}
	control, initSvc, enroll, upstream := f.Services[controlService], f.Services["init"], f.Services["enroll"], f.Services["upstream"]

	// The control plane: built from the repository's Dockerfile, serving on
	// every address of its own networks only, with a certificate for the
	// name the sidecars dial.
	if control.Build == nil || control.Build.Dockerfile != "Dockerfile" || control.Build.Context != ".." || control.Build.Target != "" {
		t.Error("the control plane must build the repository's Dockerfile (its final stage)")
	}
	if len(control.Command) == 0 || control.Command[0] != "control" {
		t.Fatalf("control command %q does not run `stack control`", control.Command)
	}
	listen, err := netip.ParseAddrPort(oneFlag(t, "control", control.Command, "listen"))
	if err != nil || !listen.Addr().IsUnspecified() {
		t.Errorf("control --listen %s: want 0.0.0.0:PORT, for the sidecars on its network (%v)", listen, err)
	}
	hosts := flagValues(control.Command, "host")
	if !slices.Contains(hosts, controlService) {
		t.Errorf("control --host %q lacks %s, the name the sidecars dial", hosts, controlService)
	}
	if m, ok := control.mountAt(stackHome); !ok || m.source != "control-data" || m.readOnly {
		t.Errorf("control: want volume control-data at %s, writable", stackHome)
	}
	if len(control.Ports) > 0 {
		t.Errorf("control publishes %q: only the sidecars may reach the control plane", control.Ports)
	}
	if len(control.Networks) == 0 || control.NetworkMode != "" {
		t.Error("control must be on its own network")
	}
	controlNets := map[string]bool{}
	var controlSubnets []netip.Prefix
	for n := range control.Networks {
		controlNets[n] = true
		if !f.Networks[n].Internal {
			t.Errorf("control is on network %s, which is not internal: the control plane must not be reachable from outside", n)
		}
		for _, c := range f.Networks[n].IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				controlSubnets = append(controlSubnets, p)
			}
		}
	}
	if control.Healthcheck == nil || len(control.Healthcheck.Test) == 0 {
		t.Error("control has no healthcheck: the sidecars and enroll wait for it to be healthy")
	}
	if control.DependsOn["init"].Condition != "service_completed_successfully" {
		t.Error("control must start after init has made its data directory")
	}
	wantURL := "https://" + net.JoinHostPort(controlService, strconv.Itoa(int(listen.Port())))

	// The one-shot setup: the script mounted into the image's build stage
	// (the final image has no shell).
	stages := dockerStages(t, "../Dockerfile")
	for name, s := range map[string]composeService{"init": initSvc, "enroll": enroll} {
		if !slices.Contains(s.Command, setupMount) || !slices.Contains(s.Volumes, "./"+setupScript+":"+setupMount+":ro") {
			t.Errorf("%s: want ./%s mounted read-only at %s and run", name, setupScript, setupMount)
		}
		if !slices.Contains(s.Command, name) {
			t.Errorf("%s: command %q does not run the script's %s step", name, s.Command, name)
		}
	}
	if initSvc.Build == nil || initSvc.Build.Target == "" || initSvc.Build.Target == stages[len(stages)-1] || !slices.Contains(stages, initSvc.Build.Target) {
		t.Errorf("init must build a stage of the Dockerfile before the final one (%q), for its shell", stages)
	}
	if enroll.Image != initSvc.Image {
		t.Errorf("enroll image %q, want init's %q", enroll.Image, initSvc.Image)
	}
	if initSvc.NetworkMode != "none" {
		t.Errorf("init network_mode %q: it runs as root and needs no network; want none", initSvc.NetworkMode)
	}
	if m, ok := initSvc.mountAt(controlDataDir); !ok || m.source != "control-data" {
		t.Errorf("init: want control-data at %s", controlDataDir)
	}
	if u := enroll.User; u == "" || strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("enroll user %q: it needs no root", u)
	}
	if m, ok := enroll.mountAt(stackHome); !ok || m.source != "control-data" || !m.readOnly || enroll.Environment["STACK_HOME"] != stackHome {
		t.Errorf("enroll: want STACK_HOME=%s, control-data mounted there read-only (the operator token and the control CA)", stackHome)
	}
	if got := enroll.Environment["STACK_CONTROL_URL"]; got != wantURL {
		t.Errorf("enroll STACK_CONTROL_URL %q, want %s", got, wantURL)
	}
	if enroll.DependsOn[controlService].Condition != "service_healthy" {
		t.Error("enroll must wait for the control plane to be healthy")
	}
	for n := range enroll.Networks {
		if !controlNets[n] {
			t.Errorf("enroll is on network %s; it needs the control plane's only", n)
		}
	}

	// The sidecars: each joins the control plane with its CA and the join
	// token enroll wrote, and holds nothing of the control plane's.
	var sidecars []string
	for name, s := range f.Services {
		if s.runsProxy() {
			sidecars = append(sidecars, name)
		}
	}
	slices.Sort(sidecars)
	if !slices.Equal(sidecars, []string{"bot-sidecar", "reporter-sidecar"}) {
		t.Fatalf("services running stack proxy: %q, want bot-sidecar and reporter-sidecar", sidecars)
	}
	agents := 0
	for _, name := range sidecars {
		sc := f.Services[name]
		short := strings.TrimSuffix(name, "-sidecar")
		t.Run(name, func(t *testing.T) {
			checkSidecar(t, f, name, short, wantURL, controlSubnets, controlNets)
		})
		for an, a := range f.Services {
			if a.NetworkMode == "service:"+name {
				agents++
				t.Run(an, func(t *testing.T) { checkAgent(t, f, an, a, sc, short) })
			}
		}
	}
	if agents != len(sidecars) {
		t.Errorf("%d agents share a sidecar's network namespace, want one per sidecar", agents)
	}

	// The upstream's CA reaches the sidecars' --upstream-ca through a
	// shared volume; its address is on network stack.
	checkUpstream(t, f, upstream)

	// Every named volume a service mounts, every network it joins and every
	// service it waits for is declared.
	for name, s := range f.Services {
		for _, m := range s.mounts() {
			if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") {
				continue // a bind mount
			}
			if _, ok := f.Volumes[m.source]; !ok {
				t.Errorf("service %s mounts volume %q, which is not declared", name, m.source)
			}
		}
		for n := range s.Networks {
			if _, ok := f.Networks[n]; !ok {
				t.Errorf("service %s joins network %q, which is not declared", name, n)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
		}
		if s.mountsVolume("control-data") && name != controlService && name != "init" && name != "enroll" {
			t.Errorf("service %s mounts control-data: the issuer key and the vault are the control plane's alone", name)
		}
	}
	for _, name := range []string{controlService, "enroll", "init"} {
		if !f.Services[name].hardened() {
			t.Errorf("service %s: want read_only: true and cap_drop: [ALL]", name)
		}
	}
}

// checkSidecar checks one sidecar; short is its name in the setup
// script's paths.
func checkSidecar(t *testing.T, f *composeFile, name, short, wantURL string, controlSubnets []netip.Prefix, controlNets map[string]bool) {
	sc := f.Services[name]
	initSvc, enroll := f.Services["init"], f.Services["enroll"]
	if sc.Image != f.Services[controlService].Image {
		t.Errorf("image %q, want the control plane's %q", sc.Image, f.Services[controlService].Image)
	}
	if !sc.hardened() {
		t.Error("want read_only: true and cap_drop: [ALL]")
	}
	if got := oneFlag(t, name, sc.Command, "control"); got != wantURL {
		t.Errorf("--control %q, want %s (the control plane's service name and --listen port)", got, wantURL)
	}
	joined := false
	for n := range sc.Networks {
		joined = joined || controlNets[n]
	}
	if !joined {
		t.Error("not on the control plane's network")
	}
	for _, dep := range []struct{ svc, cond string }{
		{controlService, "service_healthy"}, {"enroll", "service_completed_successfully"}, {"upstream", "service_healthy"},
	} {
		if sc.DependsOn[dep.svc].Condition != dep.cond {
			t.Errorf("depends_on %s: want condition %s", dep.svc, dep.cond)
		}
	}

	// Its data directory: its own volume, which init makes and enroll
	// writes the join token into.
	data, ok := sc.mountAt(stackHome)
	if !ok || data.readOnly {
		t.Fatalf("no writable volume at %s", stackHome)
	}
	if m, ok := initSvc.mountAt(setupDataDir + "/" + short); !ok || m.source != data.source {
		t.Errorf("init does not mount %s (this sidecar's data) at %s/%s", data.source, setupDataDir, short)
	}
	if m, ok := enroll.mountAt(setupDataDir + "/" + short); !ok || m.source != data.source || m.readOnly {
		t.Errorf("enroll does not mount %s (this sidecar's data) writable at %s/%s, where it writes the join token", data.source, setupDataDir, short)
	}
	for other, s := range f.Services {
		if other != name && other != "init" && other != "enroll" && s.mountsVolume(data.source) {
			t.Errorf("service %s mounts this sidecar's data directory %s", other, data.source)
		}
	}
	if got := oneFlag(t, name, sc.Command, "join-token-file"); got != stackHome+"/"+setupJoinToken {
		t.Errorf("--join-token-file %q, want %s/%s, the join token enroll writes", got, stackHome, setupJoinToken)
	}

	// The control plane's CA, exported by init, mounted read-only; and
	// nothing else of the control plane's.
	ca := oneFlag(t, name, sc.Command, "control-ca")
	caMount, ok := sc.fileVolume(ca)
	if !ok || !caMount.readOnly || path.Base(ca) != "ca.pem" {
		t.Errorf("--control-ca %s is not ca.pem in a read-only volume", ca)
	} else if m, ok := initSvc.mountAt(controlCADir); !ok || m.source != caMount.source {
		t.Errorf("--control-ca %s: volume %s is not where init exports the control CA (%s)", ca, caMount.source, controlCADir)
	}
	for _, m := range sc.mounts() {
		if m.source == "control-data" {
			t.Error("mounts the control plane's data directory (issuer key, vault)")
		}
	}
	for k, v := range sc.Environment {
		if strings.Contains(k, "TOKEN") || strings.Contains(k, "PASSPORT") || strings.HasPrefix(v, "stkj_") {
			t.Errorf("environment %s: join tokens and passports come from the control plane, not this file", k)
		}
	}

	// The agent reaches the proxy on loopback, in the shared namespace;
	// the egress guard lets it reach the upstream and nothing on the
	// control plane's network.
	lp, err := netip.ParseAddrPort(oneFlag(t, name, sc.Command, "listen"))
	if err != nil || !lp.Addr().IsLoopback() {
		t.Errorf("--listen %s: want a loopback address (the agent shares the namespace)", lp)
	}
	for _, c := range flagValues(sc.Command, "allow-cidr") {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			t.Errorf("--allow-cidr %q: %v", c, err)
			continue
		}
		for _, cs := range controlSubnets {
			if p.Overlaps(cs) {
				t.Errorf("--allow-cidr %s overlaps the control plane's network %s: agents could reach it through the proxy", p, cs)
			}
		}
	}
}

// checkAgent checks the agent a, beside sidecar sc (whose name in the
// setup script's paths is short).
func checkAgent(t *testing.T, f *composeFile, name string, a, sc composeService, short string) {
	listen := flagValues(sc.Command, "listen")
	if len(listen) != 1 || a.Environment["HTTPS_PROXY"] != "http://"+listen[0] {
		t.Errorf("HTTPS_PROXY %q, want http:// and the sidecar's --listen %q", a.Environment["HTTPS_PROXY"], listen)
	}
	if !slices.Contains(strings.Split(a.Environment["NO_PROXY"], ","), "localhost") {
		t.Errorf("NO_PROXY %q lacks localhost", a.Environment["NO_PROXY"])
	}
	if !a.hardened() {
		t.Error("want read_only: true and cap_drop: [ALL]")
	}
	if _, ok := a.Environment["STACK_PASSPORT"]; ok {
		t.Error("STACK_PASSPORT is set: a joined sidecar holds the passport (single-agent mode)")
	}
	for k, v := range a.Environment {
		if strings.HasSuffix(k, "_API_KEY") && !strings.HasPrefix(v, "stk_ph_") {
			t.Errorf("%s=%q is not a placeholder", k, v)
		}
		if strings.Contains(v, "SECRET") {
			t.Errorf("%s refers to a real key: %q", k, v)
		}
	}
	for _, arg := range a.Command {
		if _, cred, ok := strings.Cut(arg, "Bearer "); ok && !strings.HasPrefix(cred, "stk_ph_") {
			t.Errorf("command sends a credential that is not a placeholder: %q", arg)
		}
	}

	// It trusts its own sidecar's interception CA, which init exports to
	// a volume of its own, and mounts nothing else of STACK's.
	caVars := 0
	for _, k := range []string{"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"} {
		file, ok := a.Environment[k]
		if !ok {
			continue
		}
		caVars++
		m, ok := a.fileVolume(file)
		if !ok || !m.readOnly {
			t.Errorf("%s %s is not in a read-only volume", k, file)
			continue
		}
		if im, ok := f.Services["init"].mountAt(setupExportDir + "/" + short + "-ca"); !ok || im.source != m.source {
			t.Errorf("%s %s: volume %s is not where init exports %s's CA (%s/%s-ca)", k, file, m.source, short, setupExportDir, short)
		}
	}
	if caVars == 0 {
		t.Error("no CA bundle variable points at the sidecar's CA")
	}
	scData, _ := sc.mountAt(stackHome)
	for _, m := range a.mounts() {
		for _, s := range sc.mounts() {
			if m.source == s.source {
				t.Errorf("shares volume %s with its sidecar", m.source)
			}
		}
		if m.source == scData.source || m.source == "control-data" {
			t.Errorf("mounts STACK's data directory %s", m.source)
		}
	}
}

// checkUpstream: the sidecars send both API hosts to the upstream's fixed
// address, which the egress guard allows and network stack contains, and
// trust the CA it writes.
func checkUpstream(t *testing.T, f *composeFile, upstream composeService) {
	up := upstream.Networks["stack"]
	if up == nil || up.IPv4Address == "" {
		t.Fatal("upstream has no fixed address on network stack")
	}
	upAddr := netip.MustParseAddr(up.IPv4Address)
	inSubnet := false
	for _, c := range f.Networks["stack"].IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(upAddr) {
			inSubnet = true
		}
	}
	if !inSubnet {
		t.Errorf("the upstream's address %s is outside network stack's subnets", upAddr)
	}
	if upstream.Healthcheck == nil {
		t.Error("upstream has no healthcheck: the sidecars wait for its CA")
	}
	caOut := flagValues(upstream.Command, "ca-out")
	if len(caOut) != 1 {
		t.Fatalf("upstream -ca-out %q", caOut)
	}
	for name, sc := range f.Services {
		if !sc.runsProxy() {
			continue
		}
		if _, ok := sc.Networks["stack"]; !ok {
			t.Errorf("%s is not on network stack, the upstream's", name)
		}
		resolves := flagValues(sc.Command, "resolve")
		for _, host := range []string{"api.stripe.com", "api.openai.com"} {
			if !slices.Contains(resolves, host+"="+up.IPv4Address) {
				t.Errorf("%s does not --resolve %s to the upstream (%s): %q", name, host, up.IPv4Address, resolves)
			}
		}
		allowed := false
		for _, c := range flagValues(sc.Command, "allow-cidr") {
			if p, err := netip.ParsePrefix(c); err == nil && p.Contains(upAddr) {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("%s: no --allow-cidr covers the upstream's address %s", name, upAddr)
		}
		upCA := flagValues(sc.Command, "upstream-ca")
		if len(upCA) != 1 || path.Base(upCA[0]) != path.Base(caOut[0]) {
			t.Errorf("%s --upstream-ca %q and upstream -ca-out %q do not name the same file", name, upCA, caOut)
			continue
		}
		scm, ok1 := sc.mountAt(path.Dir(upCA[0]))
		upm, ok2 := upstream.mountAt(path.Dir(caOut[0]))
		if !ok1 || !ok2 || scm.source != upm.source {
			t.Errorf("%s: the upstream CA directory is not one volume shared with the upstream", name)
		}
	}
}

// No secret is written in the compose file: real keys come from the
// shell, join tokens from enroll, passports from the control plane.
func TestComposeHoldsNoSecrets(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"stkj_", "stks_", "PRIVATE KEY", "sk_live_"} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("docker-compose.yml contains %q", s)
		}
	}
	f := loadCompose(t)
	for name, s := range f.Services {
		for k, v := range s.Environment {
			secretish := strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN") || strings.Contains(k, "PASSPORT") || strings.HasSuffix(k, "_KEY")
			if secretish && !strings.HasPrefix(v, "${") && !strings.HasPrefix(v, "stk_ph_") {
				t.Errorf("service %s: %s has a literal value; take it from the environment (${VAR}) or use a placeholder", name, k)
			}
		}
	}
}

// dockerStages returns the names of the Dockerfile's stages (the image
// reference for a stage without AS), in order.
func dockerStages(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	for _, in := range parseDockerfile(t, file) {
		if in.cmd != "FROM" {
			continue
		}
		fields := strings.Fields(in.args)
		name := fields[0]
		if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
			name = fields[2]
		}
		out = append(out, name)
	}
	return out
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

package awstest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// readyWithin bounds how long RunMoto waits for moto to answer; it
// usually does in about 2 s.
const readyWithin = 60 * time.Second

// RunMoto starts a moto server, name with args followed by
// "-H 127.0.0.1 -p PORT" on a free loopback port and env added to the
// environment, waits until it answers, and stops it (its whole process
// group: moto_server may be a shim that starts the real server as a
// child) when the test ends. It returns http://127.0.0.1:PORT. A moto that
// does not come up fails the test with its output.
func RunMoto(t testing.TB, name string, args, env []string) (endpoint string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "moto.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	defer logFile.Close()
	port, err := FreePort()
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	cmd := exec.Command(name, append(args, "-H", "127.0.0.1", "-p", strconv.Itoa(port))...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("awstest: start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		killProcessGroup(cmd)
		<-exited
	})
	endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitHTTP(endpoint+"/moto-api/", exited); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("awstest: %s: %v\n%s", name, err, out)
	}
	return endpoint
}

// FreePort returns a loopback port nothing listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls u until it answers any HTTP response, or the process
// exits, or readyWithin passes.
func waitHTTP(u string, exited <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyWithin)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case werr := <-exited:
			if werr == nil {
				werr = fmt.Errorf("exit status 0")
			}
			return fmt.Errorf("exited before answering: %v", werr)
		case <-tick.C:
		}
	}
}

//go:build unix

package kmstest

import (
	"os/exec"
	"syscall"
)

// moto_server may be a shim that starts the real server as a child: run it
// in its own process group and stop the whole group.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

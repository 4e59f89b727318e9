//go:build unix

package awstest

import (
	"os/exec"
	"syscall"
)

// python3 and moto_server may be shims (pyenv) that start the real program as a
// child: run it in its own process group and stop the whole group.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

//go:build unix

package benchkit

import (
	"syscall"
	"time"
)

// ProcessCPU is the user and system CPU this process has used (0 when
// it cannot be read).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

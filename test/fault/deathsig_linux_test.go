//go:build linux

package fault

import "syscall"

// childAttrs has the kernel kill a child if the test process dies before
// its cleanups run (a -timeout panic skips them).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

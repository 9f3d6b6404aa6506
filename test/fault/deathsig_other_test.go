//go:build !linux

package fault

import "syscall"

// childAttrs: only Linux can kill a child when its parent dies; elsewhere
// the cleanups alone stop the children.
func childAttrs() *syscall.SysProcAttr { return nil }

//go:build !linux

package registry

import "syscall"

// childAttr sets nothing: only Linux ties a child's life to its parent's;
// elsewhere Close is what ends the child.
func childAttr() *syscall.SysProcAttr { return nil }

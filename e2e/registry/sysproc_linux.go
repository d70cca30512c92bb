package registry

import "syscall"

// childAttr asks the kernel to SIGKILL the docker-registry child when the
// thread that started it ends, so that a test binary that crashes or is
// killed leaves no registry running (spawn keeps that thread for as long as
// the child runs).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

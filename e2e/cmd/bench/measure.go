package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// usage is what one measured command cost.
type usage struct {
	// wall is the time from start to exit.
	wall time.Duration
	// maxRSS is the peak resident set size of the largest single process
	// of the command's tree, in bytes (see meter).
	maxRSS int64
	// sumRSS is the highest sum of the resident set sizes of the
	// processes of the command's process group, sampled from /proc every
	// sampleInterval, in bytes: what concurrent per-image copies cost
	// together. Short peaks between samples are missed.
	sumRSS int64
}

// sampleInterval is how often the process group's memory is sampled.
const sampleInterval = 50 * time.Millisecond

// meter measures commands.
//
// The peak RSS cannot be taken from the ru_maxrss that wait4 reports for a
// child of this process: Go starts children with vfork (CLONE_VM), and at
// exec the kernel folds the high-water RSS of the old address space, which
// is this process's (the registries and proxies of the bench), into the
// child's ru_maxrss. So when GNU time is available the command runs under
// `/usr/bin/time -f %M`, which forks normally and reports its child's
// ru_maxrss: for `sh -c "... | xargs ..."` that is the largest of the
// shell and every descendant it waited for (a max, not a sum). Without GNU
// time, maxRSS is the largest VmHWM (the address space's own high-water
// mark) sampled from /proc, which misses growth in a process's last
// sampleInterval.
type meter struct {
	// time is the path of GNU time, or "" to sample VmHWM instead.
	time string
	// dir is the working directory of the commands and of time's output.
	dir string
}

// newMeter returns a meter that uses /usr/bin/time when it is GNU time.
func newMeter(ctx context.Context, dir string) meter {
	const bin = "/usr/bin/time"
	out := filepath.Join(dir, "time-probe.txt")
	defer os.Remove(out)
	if err := exec.CommandContext(ctx, bin, "-f", "%M", "-o", out, "true").Run(); err == nil {
		if b, err := os.ReadFile(out); err == nil {
			if _, err := strconv.ParseInt(lastLine(string(b)), 10, 64); err == nil {
				return meter{time: bin, dir: dir}
			}
		}
	}
	return meter{dir: dir}
}

// method says how maxRSS is measured, for the report.
func (m meter) method() string {
	if m.time != "" {
		return "GNU time %M (ru_maxrss of the command's tree, largest process)"
	}
	return "largest VmHWM sampled from /proc every 50 ms (GNU time not found)"
}

// measure runs name with args in its own process group (so an interrupt
// kills the whole tree) and returns its usage. stdout is discarded; stderr
// is kept for the error, whose message ends with stderr's last line.
func (m meter) measure(ctx context.Context, name string, args ...string) (usage, error) {
	timeOut := filepath.Join(m.dir, "time.txt")
	if m.time != "" {
		args = append([]string{"-f", "%M", "-o", timeOut, name}, args...)
		name = m.time
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = m.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, fmt.Errorf("%s: %w", name, err)
	}
	var (
		wg          sync.WaitGroup
		sumRSS, hwm int64
		done        = make(chan struct{})
	)
	wg.Go(func() {
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			// The time wrapper itself is left out: it is not the tool.
			sum, h := groupMemory(cmd.Process.Pid, cmd.Process.Pid)
			sumRSS, hwm = max(sumRSS, sum), max(hwm, h)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	wg.Wait()
	if err != nil {
		return usage{}, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, lastLine(stderr.String()))
	}
	u := usage{wall: wall, sumRSS: sumRSS, maxRSS: hwm}
	if m.time != "" {
		b, err := os.ReadFile(timeOut)
		if err != nil {
			return usage{}, fmt.Errorf("time output: %w", err)
		}
		kib, err := strconv.ParseInt(lastLine(string(b)), 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("time output %q: %w", lastLine(string(b)), err)
		}
		u.maxRSS = kib * 1024
	}
	return u, nil
}

// groupMemory returns, over the processes of process group pgid other
// than skip, the sum of their resident set sizes and the largest of their
// high-water marks (VmHWM), in bytes, from /proc/PID/status.
func groupMemory(pgid, skip int) (sum, hwm int64) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0
	}
	group := strconv.Itoa(pgid)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == skip {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // the process has exited
		}
		// The command name is in parentheses and may contain anything;
		// the fields after the last ")" start with field 3 (state), so
		// field 5, the process group, is the third.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(stat[i+1:])); len(f) < 3 || f[2] != group {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		sum += statusKiB(status, "VmRSS:") * 1024
		hwm = max(hwm, statusKiB(status, "VmHWM:")*1024)
	}
	return sum, hwm
}

// statusKiB returns the value in kB of a /proc/PID/status field.
func statusKiB(status []byte, field string) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// goTool runs the go command (for builds and installs) with extra
// environment, failing with its last output line.
func goTool(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLine(string(out)))
	}
	return nil
}

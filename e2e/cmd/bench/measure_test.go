package main

import (
	"context"
	"os/exec"
	"testing"
)

// TestMeterPeakRSS checks both ways of measuring a command tree's peak RSS
// on a shell pipeline whose sort holds about 64 MiB: the result must see
// the sort, and must not include this test process's own memory, which
// ru_maxrss from Go's own wait4 would (see meter).
func TestMeterPeakRSS(t *testing.T) {
	ballast := make([]byte, 256<<20) // would show up in a polluted ru_maxrss
	for i := range ballast {
		ballast[i] = 1
	}
	meters := map[string]meter{"sampled VmHWM": {dir: t.TempDir()}}
	if m := newMeter(context.Background(), t.TempDir()); m.time != "" {
		meters["GNU time"] = m
	}
	for name, m := range meters {
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath("sort"); err != nil {
				t.Skip("no sort")
			}
			u, err := m.measure(context.Background(), "sh", "-c", "head -c 67108864 /dev/zero | sort | { sleep 0.3; cat > /dev/null; }")
			if err != nil {
				t.Fatal(err)
			}
			if u.maxRSS < 48*mib || u.maxRSS > 200*mib {
				t.Errorf("peak RSS %.1f MiB, want about 64 MiB", float64(u.maxRSS)/mib)
			}
		})
	}
	_ = ballast[len(ballast)-1]
}

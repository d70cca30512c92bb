package endtoend

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// waitUploaded polls p until at least n bytes were uploaded through it.
func waitUploaded(t *testing.T, p *faultproxy.Proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p.Stats().BytesUploaded < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d bytes uploaded after 60s", p.Stats().BytesUploaded, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// largeLayerCorpus is one image with a 64 MiB layer and a small one.
func largeLayerCorpus() *corpus {
	return &corpus{images: []*corpusImage{{
		ref: "ttl.sh/ubuntu:k3s-big", path: "ttl.sh/ubuntu:k3s-big", layer: "os", provider: true,
		image: &imagebuild.Image{Format: imagebuild.OCI, Layers: imagebuild.Layers(4242, 64*mib, 16*kib)},
	}}}
}

// TestResumeAfterKillAndInterrupt: the process is killed (SIGKILL), or
// interrupted (SIGINT, Ctrl-C), when the 64 MiB layer (four 16 MiB chunks)
// is about half uploaded, on each kind of registry. After Ctrl-C the chunk
// in flight finishes and is journaled, so the rerun re-sends at most one
// chunk on both registries. After a kill, distribution 3 resumes where the
// registry stands (at most one chunk again); distribution 2.8 drops a
// session whose last chunk was cut, so the rerun restarts the blob once,
// says so in one line and counts it in the report. The journal holds the
// upload (mode 0600), and never the password.
func TestResumeAfterKillAndInterrupt(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
			t.Run(sig.String(), func(t *testing.T) { testResume(t, kind, sig) })
		}
	})
}

func testResume(t *testing.T, kind registry.Kind, sig syscall.Signal) {
	const user, pass = "edge", "Kill-Me-Softly-42"
	const layer, chunk = 64 * mib, 16 * mib
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{Kind: kind, Users: map[string]string{user: pass}})
	c := largeLayerCorpus()
	c.seed(t, src)
	proxy := proxied(t, tgt, faultproxy.Faults{UploadBytesPerSec: 32 * mib})
	state := t.TempDir()
	args := append(mirrorArgs(c, src, proxy.Host(), "--plain-http", "--state-dir", state, "-u", user, "--password-stdin", "--debug")[1:], "--progress", "plain")

	var stderr bytes.Buffer
	cmd := exec.Command(binary(t), append([]string{"mirror"}, args...)...)
	cmd.Stdin = strings.NewReader(pass + "\n")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitUploaded(t, proxy, layer/2)
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	first := proxy.Stats().BytesUploaded
	if first >= layer*95/100 {
		t.Fatalf("the first run uploaded %d bytes before it stopped; the test did not stop it mid-layer", first)
	}
	if sig == syscall.SIGINT {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "stopping: no new transfer starts") ||
			!strings.Contains(stderr.String(), "interrupted; run the same command again") {
			t.Errorf("after Ctrl-C: %v (want exit 1, saying it stops and how to continue)\nstderr:\n%s", err, stderr.String())
		}
	}

	entries, _ := filepath.Glob(filepath.Join(state, "*.json"))
	if len(entries) == 0 {
		t.Fatalf("no upload journaled in the state dir after %s", sig)
	}
	_ = filepath.Walk(state, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(pass)) {
				t.Errorf("the password is in state file %s", p)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("state file %s has mode %v, want 0600", p, info.Mode().Perm())
			}
		}
		return nil
	})
	if strings.Contains(stderr.String(), pass) {
		t.Errorf("the password is on stderr of the first run")
	}

	proxy.Reset()
	r := run(t, pass+"\n", append([]string{"mirror"}, args...)...)
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s", r.code, r.stderr)
	}
	rep := decode(t, r)
	second := proxy.Stats().BytesUploaded
	unique := imagebuild.SumUniqueBlobBytes(c.builts()...)
	resent := first + second - unique
	restarts := strings.Count(r.stderr, "restarting blob")
	t.Logf("%s on %s after %.1f MiB; the rerun sent %.1f MiB: %.1f MiB re-sent, %d restart(s), report %d restarted / %.1f MiB resent",
		sig, kind, float64(first)/mib, float64(second)/mib, float64(resent)/mib, restarts, rep.Summary.BlobsRestarted, float64(rep.Summary.BytesResent)/mib)
	if kind == registry.V28 && sig == syscall.SIGKILL {
		// The cut chunk left partial bytes behind: the session is gone.
		if restarts != 1 || rep.Summary.BlobsRestarted != 1 || rep.Summary.BytesResent < chunk {
			t.Errorf("distribution 2.8 after a kill: %d restart line(s), report %d restarted and %d bytes resent; want one restart, said once and counted\n%s",
				restarts, rep.Summary.BlobsRestarted, rep.Summary.BytesResent, r.stderr)
		}
		if second > layer+chunk {
			t.Errorf("the rerun sent %d bytes: more than the layer once", second)
		}
	} else {
		if resent > chunk {
			t.Errorf("%d bytes re-sent, over one %d-byte chunk (first run %d, rerun %d)", resent, chunk, first, second)
		}
		if restarts != 0 || rep.Summary.BlobsRestarted != 0 {
			t.Errorf("a blob was restarted where the registry can resume:\n%s", r.stderr)
		}
	}
	c.checkTarget(t, tgt, external)
	if rest, _ := filepath.Glob(filepath.Join(state, "*.json")); len(rest) != 0 {
		t.Errorf("finished uploads left in the journal: %v", rest)
	}
}

// TestTwoProcessesAtOnce: two edgemirror processes mirror the same profile
// into the same registry with the same state dir at the same time; both
// finish with exit 0 and the target is complete.
func TestTwoProcessesAtOnce(t *testing.T) {
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{})
	c := bigCorpus(24 * mib)
	c.seed(t, src)
	state := t.TempDir()
	args := append(mirrorArgs(c, src, tgt.Host(), "--plain-http", "--state-dir", state, "--progress", "none"), chunked...)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		var b bytes.Buffer
		cmd := exec.Command(binary(t), args...)
		cmd.Stderr, cmd.Stdout = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &b)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, outs[i])
		}
	}
	c.checkTarget(t, tgt, external)
}

// TestMirrorSurvivesTargetRestart: the target registry stops and comes back
// on the same port mid-run; the run completes.
func TestMirrorSurvivesTargetRestart(t *testing.T) { forKinds(t, testMirrorSurvivesTargetRestart) }

func testMirrorSurvivesTargetRestart(t *testing.T, kind registry.Kind) {
	src := registry.StartT(t, registry.Options{})
	tgt := registry.StartT(t, registry.Options{Kind: kind})
	c := bigCorpus(48 * mib)
	c.seed(t, src)
	proxy := proxied(t, tgt, faultproxy.Faults{UploadBytesPerSec: 24 * mib})

	done := make(chan result, 1)
	go func() {
		done <- run(t, "", append(mirrorArgs(c, src, proxy.Host(), "--plain-http", "--state-dir", t.TempDir()), chunked...)...)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for proxy.Stats().BytesUploaded < 8*mib && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := tgt.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if err := tgt.Restart(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "retry: ") {
		t.Errorf("the restart went unnoticed (no retry on stderr); the test did not exercise it:\n%s", r.stderr)
	}
	c.checkTarget(t, tgt, external)
}

package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// chunkSize is edgemirror's default --chunk-size: the most a resumed
// upload may send twice.
const chunkSize = 16 * mib

// interruptResult is one interrupt figure: edgemirror stopped by a signal
// when about half of the set's largest layer is uploaded (signalAt), then
// run again.
type interruptResult struct {
	kind registry.Kind
	sig  syscall.Signal
	// layer is the size of the largest layer; unique the unique bytes of
	// the set.
	layer, unique int64
	// first and second are the bytes each run uploaded, at the proxy.
	first, second int64
	// run and rerun are the two processes.
	run, rerun proc
	// check is the target check's failure after a successful rerun, or "".
	check string
}

// resent is what crossed the wire twice.
func (r interruptResult) resent() int64 { return r.first + r.second - r.unique }

// fraction is resent as a fraction of the layer.
func (r interruptResult) fraction() float64 { return float64(r.resent()) / float64(r.layer) }

// signalAt returns the offset of a layer of the given size at which the
// interrupt figures send their signal: the middle of the chunk that holds
// the layer's half-way byte. Half the layer alone would often be a chunk
// boundary (256 MiB is 16 chunks), where nothing is in flight: the easy
// case, not the usual one.
func signalAt(layer int64) int64 {
	return min(layer/2/chunkSize*chunkSize+chunkSize/2, layer-1)
}

// interrupt mirrors set into a fresh registry of the given kind through a
// proxy that limits uploads to rate bytes per second, sends sig to
// edgemirror when about half of the largest layer is uploaded (signalAt),
// then runs the same mirror again and measures what each run sent.
func (e *env) interrupt(ctx context.Context, kind registry.Kind, sig syscall.Signal, set *corpus, rate int64) (interruptResult, error) {
	res := interruptResult{kind: kind, sig: sig, layer: set.largestLayer(), unique: set.unique}
	f, err := e.newFigure(ctx, "interrupt", kind, nil, faultproxy.Faults{UploadBytesPerSec: rate}, set)
	if err != nil {
		return res, err
	}
	defer f.close()
	// The small layers go first and fast; then the largest is alone.
	at := res.unique - res.layer + signalAt(res.layer)
	if res.run, err = e.runEdgemirror(ctx, f.args, "", sig, func() bool { return f.proxy.Stats().BytesUploaded >= at }); err != nil {
		return res, fmt.Errorf("%s, %s: %w", kind, sig, err)
	}
	// Let the proxy count what was in flight when the process died.
	time.Sleep(100 * time.Millisecond)
	res.first = f.proxy.Stats().BytesUploaded
	e.logf("%s: %s after %.1f MiB of %.1f MiB (exit %d, %.2f s after the signal)", kind, sig,
		float64(res.first)/mib, float64(res.unique)/mib, res.run.exit, res.run.afterSignal.Seconds())
	f.proxy.Reset()
	if res.rerun, err = e.runEdgemirror(ctx, f.args, "", 0, nil); err != nil {
		return res, fmt.Errorf("%s, rerun after %s: %w", kind, sig, err)
	}
	res.second = f.proxy.Stats().BytesUploaded
	res.check = e.check(ctx, f, res.rerun, fmt.Sprintf("%s, rerun after %s", kind, sig))
	e.logf("%s: rerun sent %.1f MiB: %.1f MiB re-sent", kind, float64(res.second)/mib, float64(res.resent())/mib)
	return res, nil
}

package registry

import (
	"io"
	"sync"

	"github.com/sirupsen/logrus"
)

// distribution logs through logrus's process-wide standard logger (its
// context logger package is internal, so a per-App logger cannot be
// injected). The only way to silence it, or send it somewhere, is to set the
// standard logger's output and level, which every registry in the process
// shares: this state tracks which live registries asked for logs.
var logState struct {
	mu    sync.Mutex
	sinks map[*Registry]logSink
}

type logSink struct {
	w     io.Writer
	level logrus.Level
}

// acquireLogging registers r's log wishes and reconfigures logrus. Only
// in-process (V3) registries log through logrus; for others it does nothing.
func (r *Registry) acquireLogging() {
	if r.opts.Kind != V3 {
		return
	}
	logState.mu.Lock()
	defer logState.mu.Unlock()
	if logState.sinks == nil {
		logState.sinks = make(map[*Registry]logSink)
	}
	if r.opts.LogOutput != nil {
		lvl, err := logrus.ParseLevel(r.opts.LogLevel)
		if err != nil {
			lvl = logrus.InfoLevel
		}
		logState.sinks[r] = logSink{w: r.opts.LogOutput, level: lvl}
	}
	applyLogging()
}

// releaseLogging forgets r's log wishes and reconfigures logrus (V3 only,
// like acquireLogging).
func (r *Registry) releaseLogging() {
	if r.opts.Kind != V3 {
		return
	}
	logState.mu.Lock()
	defer logState.mu.Unlock()
	delete(logState.sinks, r)
	applyLogging()
}

// applyLogging sets the logrus standard logger from logState: the most
// verbose level asked for, written to every sink. With no sink it discards
// everything at the highest threshold, so lines are not even formatted.
// logState.mu must be held.
func applyLogging() {
	std := logrus.StandardLogger()
	if len(logState.sinks) == 0 {
		std.SetOutput(io.Discard)
		std.SetLevel(logrus.PanicLevel)
		return
	}
	ws := make([]io.Writer, 0, len(logState.sinks))
	lvl := logrus.PanicLevel
	for _, s := range logState.sinks {
		ws = append(ws, s.w)
		if s.level > lvl {
			lvl = s.level
		}
	}
	std.SetOutput(io.MultiWriter(ws...))
	std.SetLevel(lvl)
}

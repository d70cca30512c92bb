package helmrepo

import (
	"context"
	"errors"
	"sync"
)

// lazy holds a value loaded on demand by callers in any number of
// goroutines. One load runs at a time; the callers that come meanwhile wait
// for it and share its outcome. A value loaded is kept for good, a failure
// is not: the next call loads again. A caller stops waiting when its
// context ends; when a load fails because its own caller's context ended,
// the callers that were waiting load again themselves. The zero lazy is
// ready for use.
type lazy[T any] struct {
	mu     sync.Mutex
	loaded bool
	val    T
	cur    *loading[T] // the load running, if any
}

// loading is one load of a lazy value.
type loading[T any] struct {
	finished chan struct{} // closed once val, err and cut are set
	val      T
	err      error
	cut      bool // err came from the loading caller's context ending
}

// get returns the value, calling load (with ctx) when it is not loaded and
// no load is running.
func (l *lazy[T]) get(ctx context.Context, load func(context.Context) (T, error)) (T, error) {
	for {
		l.mu.Lock()
		if l.loaded {
			v := l.val
			l.mu.Unlock()
			return v, nil
		}
		if cur := l.cur; cur != nil {
			l.mu.Unlock()
			select {
			case <-cur.finished:
				if cur.cut && ctx.Err() == nil {
					continue // not a failure of the value: load it here
				}
				return cur.val, cur.err
			case <-ctx.Done():
				var zero T
				return zero, ctx.Err()
			}
		}
		cur := &loading[T]{finished: make(chan struct{})}
		l.cur = cur
		l.mu.Unlock()
		l.run(ctx, cur, load)
		return cur.val, cur.err
	}
}

// run calls load for cur and publishes its outcome, even when load panics.
func (l *lazy[T]) run(ctx context.Context, cur *loading[T], load func(context.Context) (T, error)) {
	cur.err = errors.New("loading failed") // what the waiters see if load panics
	defer func() {
		l.mu.Lock()
		l.cur = nil
		if cur.err == nil {
			l.loaded, l.val = true, cur.val
		}
		l.mu.Unlock()
		close(cur.finished)
	}()
	cur.val, cur.err = load(ctx)
	cur.cut = cur.err != nil && ctx.Err() != nil
}

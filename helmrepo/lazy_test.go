package helmrepo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLazy(t *testing.T) {
	ctx := context.Background()

	t.Run("one load shared, success kept", func(t *testing.T) {
		var l lazy[int]
		var loads atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (int, error) {
			loads.Add(1)
			<-release
			return 42, nil
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if v, err := l.get(ctx, load); v != 42 || err != nil {
					t.Errorf("got %d, %v", v, err)
				}
			})
		}
		close(release)
		wg.Wait()
		if v, err := l.get(ctx, load); v != 42 || err != nil {
			t.Errorf("got %d, %v", v, err)
		}
		if n := loads.Load(); n != 1 {
			t.Errorf("%d loads, want 1", n)
		}
	})

	t.Run("failure not kept", func(t *testing.T) {
		var l lazy[int]
		boom := errors.New("boom")
		if _, err := l.get(ctx, func(context.Context) (int, error) { return 0, boom }); err != boom {
			t.Fatalf("got %v", err)
		}
		if v, err := l.get(ctx, func(context.Context) (int, error) { return 7, nil }); v != 7 || err != nil {
			t.Fatalf("got %d, %v", v, err)
		}
	})

	t.Run("a waiter loads again when the loader's context ends", func(t *testing.T) {
		var l lazy[int]
		started := make(chan struct{})
		lctx, cancel := context.WithCancel(ctx)
		leader := make(chan error, 1)
		go func() {
			_, err := l.get(lctx, func(ctx context.Context) (int, error) {
				close(started)
				<-ctx.Done()
				return 0, ctx.Err()
			})
			leader <- err
		}()
		<-started
		waiter := make(chan int, 1)
		go func() {
			v, err := l.get(ctx, func(context.Context) (int, error) { return 9, nil })
			if err != nil {
				t.Error(err)
			}
			waiter <- v
		}()
		cancel()
		if err := <-leader; !errors.Is(err, context.Canceled) {
			t.Errorf("leader: %v", err)
		}
		if v := <-waiter; v != 9 {
			t.Errorf("waiter got %d", v)
		}
	})

	t.Run("a waiter stops waiting when its context ends", func(t *testing.T) {
		var l lazy[int]
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			v, err := l.get(ctx, func(context.Context) (int, error) {
				close(started)
				<-release
				return 3, nil
			})
			if v != 3 || err != nil {
				t.Errorf("loader got %d, %v", v, err)
			}
		}()
		<-started
		wctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := l.get(wctx, func(context.Context) (int, error) { return 0, errors.New("not called") }); !errors.Is(err, context.Canceled) {
			t.Errorf("waiter: %v", err)
		}
		close(release)
		<-done
	})
}

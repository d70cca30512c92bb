package registryclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/edgemirror/edgemirror/transport"
)

// answer builds a response to a request for u with the given headers.
func answer(t *testing.T, u string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := &http.Response{Request: req, Header: http.Header{}}
	for i := 0; i+1 < len(header); i += 2 {
		resp.Header.Set(header[i], header[i+1])
	}
	return resp
}

func TestUploadOffset(t *testing.T) {
	cases := []struct {
		rng  string
		want int64
	}{
		{"0-0", 0},
		{"0-99", 100},
		{"bytes=0-99", 100},
		{"", 0},
		{"garbage", 0},
		{"0-x", 0},
		{"0--5", 0},
	}
	for _, c := range cases {
		resp := answer(t, "http://r/v2/a/blobs/uploads/", "Range", c.rng)
		if got := uploadOffset(resp); got != c.want {
			t.Errorf("Range %q: %d, want %d", c.rng, got, c.want)
		}
	}
}

func TestLocation(t *testing.T) {
	const base = "http://reg:5000/v2/a/b/blobs/uploads/"
	cases := []struct {
		loc, want string
		fails     bool
	}{
		{"/v2/a/b/blobs/uploads/u1?_state=x", "http://reg:5000/v2/a/b/blobs/uploads/u1?_state=x", false},
		{"u2", "http://reg:5000/v2/a/b/blobs/uploads/u2", false},
		{"https://storage.example/up/u3?sig=1", "https://storage.example/up/u3?sig=1", false},
		{"", "", true},
		{"http://[::1", "", true},
	}
	for _, c := range cases {
		got, err := location(answer(t, base, "Location", c.loc))
		if (err != nil) != c.fails || got != c.want {
			t.Errorf("Location %q: %q, %v", c.loc, got, err)
		}
	}
}

func TestRepoURL(t *testing.T) {
	for _, plain := range []bool{true, false} {
		rr, err := remote.NewRepository("reg.local:5000/a/b")
		if err != nil {
			t.Fatal(err)
		}
		rr.PlainHTTP = plain
		want := map[bool]string{true: "http", false: "https"}[plain] + "://reg.local:5000/v2/a/b/blobs/uploads/"
		if got := (&Repo{Repository: rr}).url("blobs/uploads/"); got != want {
			t.Errorf("plain %v: %s, want %s", plain, got, want)
		}
	}
}

func TestFetchRange(t *testing.T) {
	data, desc := testBlob(3000)
	cases := []struct {
		name    string
		opts    []simOption
		off     int64
		missing bool
		status  int // of the error; 0 for success
	}{
		{"206", nil, 1000, false, 0},
		{"200 ignoring the range", []simOption{simIgnoreRange}, 1000, false, 0},
		{"from 0", nil, 0, false, 0},
		{"416", nil, 3000, false, http.StatusRequestedRangeNotSatisfiable},
		{"404", nil, 10, true, http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newRegistrySim(t, simV3, c.opts...)
			if !c.missing {
				s.putBlob(simTestRepo, data)
			}
			rc, err := s.repo(t, simTestRepo, nil).FetchRange(context.Background(), desc, c.off)
			if c.status != 0 {
				if StatusOf(err) != c.status {
					t.Fatalf("got %v, want a %d error", err, c.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || string(got) != string(data[c.off:]) {
				t.Fatalf("read %d bytes (%v), want the %d from %d", len(got), err, len(data)-int(c.off), c.off)
			}
		})
	}
	t.Run("200 shorter than the offset", func(t *testing.T) {
		s := newRegistrySim(t, simV3, simIgnoreRange)
		s.putBlob(simTestRepo, data)
		long := desc
		long.Size = 5000
		if _, err := s.repo(t, simTestRepo, nil).FetchRange(context.Background(), long, 4000); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestMountBlob(t *testing.T) {
	data, desc := testBlob(500)
	cases := []struct {
		mode    simMode
		from    string // where the mount reads; the blob is in edge/src
		mounted bool
	}{
		{simV3, "edge/src", true},
		{simV3, "edge/other", false},
		{simV28, "edge/src", true},
		{simZot, "edge/other", true}, // zot ignores from
		{simV3, "", false},           // no from: an upload session, cancelled
		{simV28, "", false},
		{simZot, "", true}, // zot mounts from its store
	}
	for _, c := range cases {
		t.Run(string(c.mode)+" from "+c.from, func(t *testing.T) {
			s := newRegistrySim(t, c.mode)
			s.putBlob("edge/src", data)
			ok, err := s.repo(t, simTestRepo, nil).MountBlob(context.Background(), desc, c.from)
			if err != nil || ok != c.mounted {
				t.Fatalf("mounted %v, %v; want %v", ok, err, c.mounted)
			}
			if _, there := s.blob(simTestRepo, desc.Digest); there != c.mounted {
				t.Errorf("blob in the repository: %v", there)
			}
			if s.openSessions() != 0 {
				t.Errorf("%d upload sessions left open", s.openSessions())
			}
			if want := map[bool]int{true: 0, false: 1}[c.mounted]; s.count(http.MethodDelete, "upload") != want {
				t.Errorf("%d DELETEs, want %d", s.count(http.MethodDelete, "upload"), want)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		s := newRegistrySim(t, simV3)
		s.onRequest(faultAt(http.MethodPost, "start", 1, simFault{Status: http.StatusForbidden, Code: "DENIED"}))
		ok, err := s.repo(t, simTestRepo, nil).MountBlob(context.Background(), desc, "edge/src")
		if ok || transport.Reason(err) != transport.ReasonForbidden {
			t.Fatalf("got %v, %v", ok, err)
		}
	})
}

func TestCheckPush(t *testing.T) {
	cases := []struct {
		name   string
		fault  simFault
		reason string // "" for success
	}{
		{"accepted", simFault{}, ""},
		{"unauthorized", simFault{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED"}, transport.ReasonUnauthorized},
		{"forbidden", simFault{Status: http.StatusForbidden, Code: "DENIED"}, transport.ReasonForbidden},
		{"project not found", simFault{Status: http.StatusNotFound, Code: "NAME_UNKNOWN"}, transport.ReasonNotFound},
	}
	for _, c := range cases {
		for _, mode := range simModes {
			t.Run(c.name+" "+string(mode), func(t *testing.T) {
				s := newRegistrySim(t, mode)
				s.onRequest(faultAt(http.MethodPost, "start", 1, c.fault))
				err := s.repo(t, simTestRepo, nil).CheckPush(context.Background())
				if transport.Reason(err) != c.reason || (err == nil) != (c.reason == "") {
					t.Fatalf("got %v (%q), want %q", err, transport.Reason(err), c.reason)
				}
				if s.openSessions() != 0 {
					t.Errorf("%d upload sessions left open", s.openSessions())
				}
				if c.reason == transport.ReasonNotFound && (!errors.Is(err, errdef.ErrNotFound) || !hasCode(err, "NAME_UNKNOWN")) {
					t.Errorf("error %v does not carry the registry's code", err)
				}
			})
		}
	}
	t.Run("default client", func(t *testing.T) {
		s := newRegistrySim(t, simV3)
		r := s.repo(t, simTestRepo, nil)
		r.Client = nil // auth.DefaultClient
		if err := r.CheckPush(context.Background()); err != nil || s.openSessions() != 0 {
			t.Fatalf("got %v, %d sessions open", err, s.openSessions())
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		s := newRegistrySim(t, simV3)
		r := s.repo(t, simTestRepo, nil)
		s.srv.Close()
		var ue *url.Error
		if err := r.CheckPush(context.Background()); !errors.As(err, &ue) || transport.Reason(err) != transport.ReasonNetwork {
			t.Fatalf("got %v", err)
		}
	})
}

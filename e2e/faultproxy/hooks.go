package faultproxy

import (
	"encoding/json"
	"mime"
	"net/http"
)

// Chain returns a Hook that asks hooks in order and uses the first answer
// with ok true; when none has one, the random faults apply. nil hooks are
// skipped, so Chain(a, nil) is a.
func Chain(hooks ...Hook) Hook {
	hooks = append([]Hook(nil), hooks...)
	return func(r *http.Request, info Info) (Fault, bool) {
		for _, h := range hooks {
			if h == nil {
				continue
			}
			if f, ok := h(r, info); ok {
				return f, true
			}
		}
		return Fault{}, false
	}
}

// Docker manifest media types that zot refuses unless its configuration
// has http.compat ["docker2s2"].
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// zotManifestInvalid is the description zot puts in the detail of every
// MANIFEST_INVALID error.
const zotManifestInvalid = "During upload, manifests undergo several checks ensuring " +
	"validity. If those checks fail, this error MAY be returned, unless a more " +
	"specific error is included. The detail will contain information the failed validation."

// RefuseDockerManifests returns a Hook that answers a manifest PUT whose
// Content-Type is a Docker schema 2 manifest or a Docker manifest list the
// way zot does without `http.compat: ["docker2s2"]` in its configuration:
// 415 Unsupported Media Type, Content-Type application/json, and
//
//	{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid",
//	  "detail":{"description":"During upload, ...","mediaType":"<Content-Type>"}}]}
//
// (on one line), without forwarding the request. zot checks the header
// before it reads the body, and so does the hook. Other requests, OCI
// manifests and indexes included, are left to the random faults (ok is
// false); use Chain to combine it with other hooks.
func RefuseDockerManifests() Hook {
	return func(r *http.Request, info Info) (Fault, bool) {
		if info.Kind != KindManifestPut {
			return Fault{}, false
		}
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != mediaTypeDockerManifest && mt != mediaTypeDockerManifestList) {
			return Fault{}, false
		}
		return Respond(http.StatusUnsupportedMediaType,
			http.Header{"Content-Type": {"application/json"}}, zotManifestInvalidBody(ct)), true
	}
}

// zotManifestInvalidBody returns zot's MANIFEST_INVALID error list for a
// refused media type, byte for byte as zot marshals it (sorted detail keys,
// no trailing newline).
func zotManifestInvalidBody(mediaType string) []byte {
	type zotError struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Detail  map[string]string `json:"detail"`
	}
	body, err := json.Marshal(struct {
		Errors []zotError `json:"errors"`
	}{[]zotError{{
		Code:    "MANIFEST_INVALID",
		Message: "manifest invalid",
		Detail:  map[string]string{"description": zotManifestInvalid, "mediaType": mediaType},
	}}})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return body
}

package faultproxy

import (
	"net/http"
	"strings"
)

// Kind classifies a registry API request (OCI distribution spec routes).
type Kind string

// The request kinds counted and matched by the proxy.
const (
	KindBase           Kind = "base"            // GET/HEAD /v2/
	KindBlobHead       Kind = "blob-head"       // HEAD /v2/<name>/blobs/<digest>
	KindBlobGet        Kind = "blob-get"        // GET /v2/<name>/blobs/<digest>
	KindBlobDelete     Kind = "blob-delete"     // DELETE /v2/<name>/blobs/<digest>
	KindUploadPost     Kind = "upload-post"     // POST /v2/<name>/blobs/uploads/ without mount=
	KindMount          Kind = "mount"           // POST /v2/<name>/blobs/uploads/?mount=...
	KindUploadPatch    Kind = "upload-patch"    // PATCH /v2/<name>/blobs/uploads/<id>
	KindUploadPut      Kind = "upload-put"      // PUT /v2/<name>/blobs/uploads/<id>?digest=
	KindUploadStatus   Kind = "upload-status"   // GET/HEAD /v2/<name>/blobs/uploads/<id>
	KindUploadDelete   Kind = "upload-delete"   // DELETE /v2/<name>/blobs/uploads/<id>
	KindManifestHead   Kind = "manifest-head"   // HEAD /v2/<name>/manifests/<ref>
	KindManifestGet    Kind = "manifest-get"    // GET /v2/<name>/manifests/<ref>
	KindManifestPut    Kind = "manifest-put"    // PUT /v2/<name>/manifests/<ref>
	KindManifestDelete Kind = "manifest-delete" // DELETE /v2/<name>/manifests/<ref>
	KindTags           Kind = "tags"            // /v2/<name>/tags/list
	KindReferrers      Kind = "referrers"       // /v2/<name>/referrers/<digest>
	KindCatalog        Kind = "catalog"         // /v2/_catalog
	KindOther          Kind = "other"           // anything else
)

// IsTransfer reports whether requests of kind k carry blob content: blob
// GETs (in the response) and upload POST/PATCH/PUT (in the request).
func (k Kind) IsTransfer() bool {
	switch k {
	case KindBlobGet, KindUploadPost, KindUploadPatch, KindUploadPut:
		return true
	}
	return false
}

// isUpload reports whether k's request body is blob content.
func (k Kind) isUpload() bool {
	switch k {
	case KindUploadPost, KindUploadPatch, KindUploadPut:
		return true
	}
	return false
}

// Classify returns the kind of a registry API request.
func Classify(r *http.Request) Kind {
	p := r.URL.Path
	if p == "/v2/" || p == "/v2" {
		return KindBase
	}
	if !strings.HasPrefix(p, "/v2/") {
		return KindOther
	}
	if p == "/v2/_catalog" {
		return KindCatalog
	}
	m := r.Method
	// Repository names may contain slashes, so match the route suffix
	// after the last marker.
	if i := strings.LastIndex(p, "/blobs/uploads"); i > 0 {
		rest := strings.Trim(p[i+len("/blobs/uploads"):], "/")
		if rest == "" {
			if m == http.MethodPost {
				if r.URL.Query().Get("mount") != "" {
					return KindMount
				}
				return KindUploadPost
			}
			return KindOther
		}
		switch m {
		case http.MethodPatch:
			return KindUploadPatch
		case http.MethodPut:
			return KindUploadPut
		case http.MethodGet, http.MethodHead:
			return KindUploadStatus
		case http.MethodDelete:
			return KindUploadDelete
		}
		return KindOther
	}
	if i := strings.LastIndex(p, "/blobs/"); i > 0 {
		switch m {
		case http.MethodHead:
			return KindBlobHead
		case http.MethodGet:
			return KindBlobGet
		case http.MethodDelete:
			return KindBlobDelete
		}
		return KindOther
	}
	if i := strings.LastIndex(p, "/manifests/"); i > 0 {
		switch m {
		case http.MethodHead:
			return KindManifestHead
		case http.MethodGet:
			return KindManifestGet
		case http.MethodPut:
			return KindManifestPut
		case http.MethodDelete:
			return KindManifestDelete
		}
		return KindOther
	}
	if strings.HasSuffix(p, "/tags/list") {
		return KindTags
	}
	if strings.LastIndex(p, "/referrers/") > 0 {
		return KindReferrers
	}
	return KindOther
}

// Repository returns the repository name of a registry API request
// ("quay.io/acme/app" for /v2/quay.io/acme/app/manifests/1.0), or "" for
// requests outside a repository (/v2/, the catalog, other paths).
func Repository(r *http.Request) string {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/v2/") || p == "/v2/_catalog" {
		return ""
	}
	p = p[len("/v2/"):]
	best := -1
	for _, marker := range []string{"/blobs/", "/manifests/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(p, marker); i > 0 && (best < 0 || i > best) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return p[:best]
}

package helmrepo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// fetchArchive downloads the chart archive at u, at most limit bytes, and
// checks it against indexDigest, its digest as index.yaml gives it ("" checks
// nothing).
func fetchArchive(ctx context.Context, client *http.Client, u *url.URL, user *url.Userinfo, limit int64, indexDigest string) ([]byte, error) {
	archive, err := getAll(ctx, client, u, user, limit, "archive "+redact(u.String()))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(archive)
	got := hex.EncodeToString(sum[:])
	if want := digestHex(indexDigest); want != "" && want != got {
		return nil, fmt.Errorf("archive digest mismatch: index.yaml says %s, the archive is sha256:%s", indexDigest, got)
	}
	return archive, nil
}

// digestHex is the hex part of a digest as index.yaml gives it: with or
// without "sha256:", in lower case.
func digestHex(indexDigest string) string {
	return strings.ToLower(strings.TrimPrefix(indexDigest, "sha256:"))
}

// readArchive streams through the chart archive and returns the chart's
// metadata as Helm's loader (loader.LoadArchive) builds it: Chart.yaml one
// directory deep (any directory name), apiVersion defaulted to v1,
// requirements.yaml merged in, strings sanitized as Metadata.Validate does.
// It also returns Chart.yaml's modification time. The whole archive is read,
// so a truncated or corrupt one fails here.
func readArchive(archive []byte, lim limits) (*metadata, time.Time, error) {
	var created time.Time
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, created, fmt.Errorf("the archive is not a gzip file: %w", err)
	}
	body := &capReader{r: zr, left: lim.unpacked}
	tr := tar.NewReader(body)
	var chartYAML, requirements [][]byte
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, created, fmt.Errorf("reading the archive: %w", err)
		}
		if hd.FileInfo().IsDir() || hd.Typeflag == tar.TypeXGlobalHeader || hd.Typeflag == tar.TypeXHeader {
			continue
		}
		// As Helm: a Windows-made archive may use '\'; the first element is
		// the chart's directory.
		delim := "/"
		if strings.ContainsRune(hd.Name, '\\') {
			delim = "\\"
		}
		parts := strings.Split(hd.Name, delim)
		if parts[0] == "Chart.yaml" {
			return nil, created, errors.New("the archive has Chart.yaml at its top, not in the chart's directory")
		}
		n := path.Clean(strings.Join(parts[1:], "/"))
		if n != "Chart.yaml" && n != "requirements.yaml" {
			continue
		}
		if hd.Size > lim.file {
			return nil, created, fmt.Errorf("%s is larger than %s", n, sizeText(lim.file))
		}
		data, err := io.ReadAll(io.LimitReader(tr, lim.file+1))
		if err != nil {
			return nil, created, fmt.Errorf("reading %s from the archive: %w", n, err)
		}
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		if n == "Chart.yaml" {
			if chartYAML == nil {
				created = hd.ModTime
			}
			chartYAML = append(chartYAML, data)
		} else {
			requirements = append(requirements, data)
		}
	}
	// Read to the end of the gzip stream so its checksum is verified.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, created, fmt.Errorf("reading the archive: %w", err)
	}
	if len(chartYAML) == 0 {
		return nil, created, errors.New("the archive has no Chart.yaml in the chart's directory")
	}
	meta := &metadata{}
	for _, data := range chartYAML {
		if err := unmarshalYAML(data, meta); err != nil {
			return nil, created, fmt.Errorf("the archive's Chart.yaml: %w", err)
		}
	}
	if meta.APIVersion == "" {
		meta.APIVersion = "v1"
	}
	for _, data := range requirements {
		if err := unmarshalYAML(data, meta); err != nil {
			return nil, created, fmt.Errorf("the archive's requirements.yaml: %w", err)
		}
	}
	if err := meta.sanitize(); err != nil {
		return nil, created, fmt.Errorf("the archive's Chart.yaml: %w", err)
	}
	return meta, created, nil
}

// capReader fails once more than left bytes have been read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// Probe for one more byte: only data past the cap is an error.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, errors.New("the archive unpacks to more than the allowed size")
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

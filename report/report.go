// Package report holds the run report (schema version 1) and renders it
// as JSON, CSV, Markdown or a text table.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/targets"
)

// SchemaVersion is the version of the JSON report layout.
const SchemaVersion = 1

// Report is the result of one run.
type Report struct {
	SchemaVersion int              `json:"schemaVersion"`
	Tool          string           `json:"tool"`
	Version       string           `json:"version"`
	Command       string           `json:"command"`
	StartedAt     time.Time        `json:"startedAt"`
	FinishedAt    time.Time        `json:"finishedAt"`
	Registry      string           `json:"registry"`
	Summary       Summary          `json:"summary"`
	Images        []*targets.Image `json:"images"`
	Charts        []*targets.Image `json:"charts"`
	Warnings      []string         `json:"warnings"`
}

// Summary counts images and charts by status (the status counts cover
// both) and what crossed the wire.
type Summary struct {
	Images        int   `json:"images"`
	Charts        int   `json:"charts"`
	Planned       int   `json:"planned"`
	Copied        int   `json:"copied"`
	Present       int   `json:"present"`
	Missing       int   `json:"missing"`
	Mismatch      int   `json:"mismatch"`
	Failed        int   `json:"failed"`
	Unresolved    int   `json:"unresolved"`
	Unmapped      int   `json:"unmapped"`
	Skipped       int   `json:"skipped"`
	BytesUploaded int64 `json:"bytesUploaded"`
	BytesMounted  int64 `json:"bytesMounted"`
	BlobsUploaded int   `json:"blobsUploaded"`
	BlobsMounted  int   `json:"blobsMounted"`
	BlobsSkipped  int   `json:"blobsSkipped"`
	// BlobsRestarted counts the upload sessions the target lost while they
	// held bytes, so the blob started over (distribution 2.8, Harbor and
	// zot after a chunk cut mid-body); BytesResent the bytes sent again.
	BlobsRestarted int   `json:"blobsRestarted"`
	BytesResent    int64 `json:"bytesResent"`
}

// New starts a report for command from a plan.
func New(command, version, registry string, plan *targets.Plan, started time.Time) *Report {
	r := &Report{
		SchemaVersion: SchemaVersion, Tool: "edgemirror", Version: version, Command: command,
		StartedAt: started.UTC(), Registry: registry,
		Images: plan.Images, Charts: plan.Charts, Warnings: plan.Warnings,
	}
	if r.Images == nil {
		r.Images = []*targets.Image{}
	}
	if r.Charts == nil {
		r.Charts = []*targets.Image{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	return r
}

// Finish stamps the end time and counts the statuses; the transfer figures
// of the summary are left as the caller set them.
func (r *Report) Finish(now time.Time) {
	r.FinishedAt = now.UTC()
	s := &r.Summary
	s.Images, s.Charts, s.Planned, s.Copied, s.Present, s.Missing, s.Mismatch = 0, 0, 0, 0, 0, 0, 0
	s.Failed, s.Unresolved, s.Unmapped, s.Skipped = 0, 0, 0, 0
	counters := map[targets.Status]*int{
		targets.Planned: &s.Planned, targets.Copied: &s.Copied, targets.Present: &s.Present,
		targets.Missing: &s.Missing, targets.Mismatch: &s.Mismatch, targets.Failed: &s.Failed,
		targets.Unresolved: &s.Unresolved, targets.Unmapped: &s.Unmapped, targets.Skipped: &s.Skipped,
	}
	for _, im := range r.Images {
		s.Images++
		if c := counters[im.Status]; c != nil {
			*c++
		}
	}
	for _, im := range r.Charts {
		s.Charts++
		if c := counters[im.Status]; c != nil {
			*c++
		}
	}
}

// Failures counts the rows (images and charts) whose status is a failure;
// an optional image missing is a warning, not a failure.
func (r *Report) Failures() int {
	n := 0
	for _, list := range [][]*targets.Image{r.Images, r.Charts} {
		for _, im := range list {
			if im.Status.Failure() && !im.Optional {
				n++
			}
		}
	}
	return n
}

// Format is a report rendering.
type Format string

// The report formats.
const (
	JSON     Format = "json"
	CSV      Format = "csv"
	Markdown Format = "md"
	Text     Format = "txt"
)

// FormatFor picks the format: override if set, else the file's extension.
func FormatFor(path, override string) (Format, error) {
	f := override
	if f == "" {
		f = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	}
	switch f {
	case "json":
		return JSON, nil
	case "csv":
		return CSV, nil
	case "md", "markdown":
		return Markdown, nil
	case "txt", "text":
		return Text, nil
	}
	if override != "" {
		return "", fmt.Errorf("report format %q: use json, csv, md or txt", override)
	}
	return "", fmt.Errorf("report %s: cannot tell the format from the extension; use .json, .csv, .md or .txt, or --report-format", path)
}

// Write renders r in format f.
func Write(w io.Writer, r *Report, f Format) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case CSV:
		return writeCSV(w, r)
	case Markdown:
		return writeMarkdown(w, r)
	default:
		return writeText(w, r)
	}
}

type row struct {
	kind string
	im   *targets.Image
}

func (r *Report) rows() []row {
	var out []row
	for _, im := range r.Images {
		out = append(out, row{"image", im})
	}
	for _, im := range r.Charts {
		out = append(out, row{"chart", im})
	}
	return out
}

func origins(im *targets.Image) string {
	parts := make([]string, len(im.Origins))
	for i, o := range im.Origins {
		parts[i] = fmt.Sprintf("%s/%s(%s):%s", o.Profile, o.Pack, o.Layer, o.Origin)
	}
	return strings.Join(parts, "; ")
}

func first(im *targets.Image) profile.Provenance {
	if len(im.Origins) == 0 {
		return profile.Provenance{}
	}
	return im.Origins[0]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"kind", "status", "source", "canonical", "target", "digest", "reason", "origins", "bytes", "platforms"})
	for _, rw := range r.rows() {
		im := rw.im
		_ = cw.Write([]string{rw.kind, string(im.Status), im.Source, im.Canonical, im.Target, im.Digest, im.Reason,
			origins(im), strconv.FormatInt(im.Bytes, 10), strings.Join(im.Platforms, " ")})
	}
	cw.Flush()
	return cw.Error()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func writeMarkdown(w io.Writer, r *Report) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "# edgemirror %s report\n\n", r.Command)
	fmt.Fprintf(b, "- registry: `%s`\n- started: %s\n- finished: %s\n- %s\n\n", dash(r.Registry),
		r.StartedAt.Format(time.RFC3339), r.FinishedAt.Format(time.RFC3339), SummaryLine(r))
	b.WriteString("| kind | status | source | target | digest | reason | origins |\n|---|---|---|---|---|---|---|\n")
	for _, rw := range r.rows() {
		im := rw.im
		fmt.Fprintf(b, "| %s | %s | `%s` | %s | %s | %s | %s |\n", rw.kind, im.Status, mdEscape(im.Source),
			mdCode(im.Target), mdCode(im.Digest), mdEscape(im.Reason), mdEscape(origins(im)))
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\n## Warnings\n\n")
		for _, wn := range r.Warnings {
			fmt.Fprintf(b, "- %s\n", wn)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdCode(s string) string {
	if s == "" {
		return ""
	}
	return "`" + mdEscape(s) + "`"
}

// writeText renders the table people read on a terminal.
func writeText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tPROFILE\tLAYER\tPACK\tSOURCE → TARGET")
	for _, rw := range r.rows() {
		im := rw.im
		o := first(im)
		pack := o.Pack
		if len(im.Origins) > 1 {
			pack += fmt.Sprintf(" (+%d)", len(im.Origins)-1)
		}
		what := dash(im.Source)
		if rw.kind == "chart" {
			what = "chart " + what
		}
		if im.Target != "" {
			what += " → " + im.Target
		}
		if im.Reason != "" {
			what += "  (" + im.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Status, dash(o.Profile), dash(o.Layer), dash(pack), what)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, SummaryLine(r))
	return err
}

// SummaryLine is a one-line count of the statuses, for example
// "12 images and 1 charts: 11 planned, 1 unresolved, 1 skipped".
func SummaryLine(r *Report) string {
	s := r.Summary
	parts := []string{}
	for _, c := range []struct {
		n    int
		name string
	}{{s.Planned, "planned"}, {s.Copied, "copied"}, {s.Present, "present"}, {s.Missing, "missing"},
		{s.Mismatch, "mismatch"}, {s.Failed, "failed"}, {s.Unresolved, "unresolved"}, {s.Unmapped, "unmapped"}, {s.Skipped, "skipped"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	line := fmt.Sprintf("%d images", s.Images)
	if s.Charts > 0 {
		line += fmt.Sprintf(" and %d charts", s.Charts)
	}
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, ", ")
	}
	return line
}

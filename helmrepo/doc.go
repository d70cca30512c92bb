// Package helmrepo reads charts from Helm HTTP(S) repositories (through
// their index.yaml) and presents each as the OCI Helm chart `helm push`
// would store, so that charts named by profiles can be mirrored to a
// registry.
//
// A [Repos] fetches each repository's index.yaml once and opens charts from
// it; [Repos.Chart] returns an [OCIChart], a read-only OCI target that
// downloads the chart archive only when its manifest or a blob is asked
// for, and that tells the archive's digest from index.yaml beforehand
// ([OCIChart.ArchiveDigest]).
package helmrepo

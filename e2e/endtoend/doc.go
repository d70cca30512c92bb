// Package endtoend runs the edgemirror command line in-process against real
// CNCF distribution registries started on 127.0.0.1 (see ../registry), with a
// counting, fault-injecting proxy in front where a test needs one.
package endtoend

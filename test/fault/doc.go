// Package fault holds SPA's fault tests: they build nats-server,
// spa-server, spa-worker and spa-ctl, run them as processes on 127.0.0.1
// with their data in temporary directories, kill them (SIGKILL) under
// load, and check that no acknowledged event is lost or applied twice and
// that every read model equals one rebuilt from the log. The package has
// only tests; `go test -short` skips them.
package fault

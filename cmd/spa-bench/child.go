package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"spa/internal/natsauth"
)

// serverCommand is the hidden first argument with which spa-bench runs the
// all-in-one server (internal/server) in its child process.
const serverCommand = "_server"

// servingLine starts the line the child prints once it serves gRPC.
const servingLine = "serving "

// child is the all-in-one server running in a child process: its own
// RSS and CPU time are then its own.
type child struct {
	cmd     *exec.Cmd
	addr    string
	natsURL string
	dataDir string
	logFile string
	exited  chan error
	once    sync.Once
	stopErr error
}

// startChild runs the all-in-one server on dataDir in a child process
// (this binary, with serverCommand), its gRPC on a free loopback port and
// its NATS on another for the admin identity, fsync on every write unless
// extra says --no-sync, and the API's per-caller limits lifted: every
// call of the bench comes from one address. It returns once the child
// serves gRPC.
func startChild(ctx context.Context, dataDir string, extra ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &child{dataDir: dataDir, natsURL: "nats://127.0.0.1:" + strconv.Itoa(port), exited: make(chan error, 1),
		logFile: filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-server.log")}
	args := append([]string{serverCommand, "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--nats-listen", "127.0.0.1:" + strconv.Itoa(port),
		"--reflection=false", "--limit-rate", "1000000", "--limit-burst", "1000000", "--limit-streams", "100000"}, extra...)
	logOut, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logOut.Close()
	c.cmd = exec.Command(exe, args...)
	c.cmd.Stderr = logOut
	c.cmd.Env = childEnv()
	c.cmd.SysProcAttr = childAttr()
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the server: %w", err)
	}
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), servingLine); ok {
				addrs <- a
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	select {
	case c.addr = <-addrs:
		return c, nil
	case err := <-c.exited:
		return nil, fmt.Errorf("the server exited before serving (%v); its log: %s\n%s", err, c.logFile, tail(c.logFile))
	case <-time.After(2 * time.Minute):
		_ = c.stop()
		return nil, fmt.Errorf("the server did not serve within 2 minutes; its log: %s", c.logFile)
	case <-ctx.Done():
		_ = c.stop()
		return nil, ctx.Err()
	}
}

// stop asks the server to shut down (SIGTERM) and waits for it, killing
// it if it takes more than a minute. Called again, it returns the first
// call's answer.
func (c *child) stop() error {
	c.once.Do(func() {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			c.stopErr = err
			return
		}
		select {
		case c.stopErr = <-c.exited:
		case <-time.After(time.Minute):
			_ = c.cmd.Process.Kill()
			<-c.exited
			c.stopErr = errors.New("the server did not stop within a minute: killed")
		}
	})
	return c.stopErr
}

// childEnv is the bench's environment without SPA's variables: only the
// bench's flags configure its server.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPA_") {
			env = append(env, kv)
		}
	}
	return env
}

// nats connects to the child's NATS as the admin identity, with the
// key the embedded server made in its data directory.
func (c *child) nats() (*nats.Conn, error) {
	opts, err := natsauth.Client{Identity: natsauth.Admin, NkeyFile: natsauth.SeedFile(filepath.Join(c.dataDir, "nats"), natsauth.Admin)}.Options()
	if err != nil {
		return nil, err
	}
	return nats.Connect(c.natsURL, append(opts, nats.Name("spa-bench"), nats.Timeout(10*time.Second))...)
}

// freePort returns a loopback port free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of a file, for an error message.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// serverMemory returns the child's RSS now and at its peak, in MiB; a
// failure to read them is noted in skipped (when given).
func serverMemory(c *child, skipped *[]string) (rss, peak float64) {
	rss, peak, err := memory(c.cmd.Process.Pid)
	if err != nil && skipped != nil {
		*skipped = append(*skipped, "server RSS: "+err.Error())
	}
	return round(rss, 1), round(peak, 1)
}

// idleCPU returns the share of a core the child used over d while the
// bench asked nothing of it, in percent.
func idleCPU(ctx context.Context, c *child, d time.Duration, skipped *[]string) float64 {
	pid := c.cmd.Process.Pid
	before, err := cpuTime(pid)
	start := time.Now()
	if err == nil {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		var after time.Duration
		if after, err = cpuTime(pid); err == nil {
			return round(100*float64(after-before)/float64(time.Since(start)), 2)
		}
	}
	*skipped = append(*skipped, "server idle CPU: "+err.Error())
	return 0
}

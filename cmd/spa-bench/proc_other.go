//go:build !linux

package main

import (
	"errors"
	"syscall"
	"time"
)

var errNoProc = errors.New("process figures are read from /proc, on Linux only")

func childAttr() *syscall.SysProcAttr { return nil }

func memory(int) (rss, peak float64, err error) { return 0, 0, errNoProc }

func cpuTime(int) (time.Duration, error) { return 0, errNoProc }

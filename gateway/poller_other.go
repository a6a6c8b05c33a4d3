//go:build !linux

package gateway

import "syscall"

// poller is Linux's epoll (poller_linux.go); elsewhere there is none and
// every pump keeps its goroutine.
type poller struct{}

type registration struct{}

func sharedPoller() *poller { return nil }

func (*poller) arm(syscall.RawConn, *registration, func()) error { return nil }

func (*poller) forget(*registration) {}

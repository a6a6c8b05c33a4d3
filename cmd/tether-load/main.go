// Command tether-load puts load on conversations through any endpoint that
// speaks tether.v1 (the gateway, a runtime, a proxy) and reports what it
// measured: closed-loop throughput, round trips at a fixed rate, or idle
// sockets held open. A round trip is a message until the end of the agent's
// turn that answers it; the conversations should run an agent that answers
// every message (echo).
//
//	tether-load --url 'ws://127.0.0.1:8080/v1/conversations/bench/c{i}' --conversations 16 \
//	  --token-file token --mode rate --rate 800 --messages 20000
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/internal/load"
)

func main() {
	url := flag.String("url", "", "Socket URL of conversation i, with {i} for i (0 to --conversations - 1).")
	convs := flag.Int("conversations", 1, "Conversations to spread the sockets over.")
	sockets := flag.Int("sockets", 16, "Sockets to open.")
	mode := flag.String("mode", "closed", "closed (round trips back to back), rate (round trips at --rate) or idle (hold --sockets open).")
	messages := flag.Int("messages", 10000, "Round trips in all, for closed and rate.")
	rate := flag.Float64("rate", 800, "Round trips a second in all, for rate.")
	hold := flag.Duration("hold", 0, "How long idle sockets stay open; until SIGINT or SIGTERM when 0.")
	tokenFile := flag.String("token-file", "", "File holding the bearer token.")
	sourceIPs := flag.String("source-ips", "", "Comma-separated loopback source addresses to spread sockets over (each has its own ephemeral ports).")
	flag.Parse()
	if err := run(*url, *convs, *sockets, *mode, *messages, *rate, *hold, *tokenFile, *sourceIPs); err != nil {
		fmt.Fprintln(os.Stderr, "tether-load:", err)
		os.Exit(1)
	}
}

func run(url string, convs, sockets int, mode string, messages int, rate float64, hold time.Duration, tokenFile, sourceIPs string) error {
	if url == "" || convs < 1 || sockets < 1 {
		return fmt.Errorf("--url, --conversations >= 1 and --sockets >= 1 are required")
	}
	target := load.Target{URL: func(i int) string { return strings.ReplaceAll(url, "{i}", strconv.Itoa(i)) }, Header: http.Header{}}
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile) //nolint:gosec // the user's file
		if err != nil {
			return err
		}
		target.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	for _, ip := range strings.Split(sourceIPs, ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			target.SourceIPs = append(target.SourceIPs, ip)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	conns, err := target.DialAll(ctx, sockets, convs, 64)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)
	fmt.Printf("%d sockets bound in %s\n", sockets, time.Since(start).Round(time.Millisecond))

	var res load.Result
	switch mode {
	case "idle":
		if hold > 0 {
			select {
			case <-time.After(hold):
			case <-ctx.Done():
			}
		} else {
			<-ctx.Done()
		}
		return nil
	case "closed":
		res, err = load.ClosedLoop(conns, messages)
	case "rate":
		res, err = load.FixedRate(conns, rate, messages)
	default:
		return fmt.Errorf("unknown --mode %q: closed, rate or idle", mode)
	}
	fmt.Printf("%d round trips in %s: %.0f/s; p50 %s, p99 %s, max %s\n", res.Messages, res.Elapsed.Round(time.Millisecond),
		res.PerSecond(), res.Quantile(0.5), res.Quantile(0.99), res.Quantile(1))
	return err
}

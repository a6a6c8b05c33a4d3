// Command minproxy is the floor any WebSocket proxy pays on this machine,
// written only for the benchmarks: it dials the upstream, upgrades the
// client, and two goroutines copy frames with gorilla/websocket. No
// authentication, routing, holding, limits or resume: none of what the
// gateway does, only what it cannot avoid.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tether.dev/tether/protocol"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "Address to serve on.")
	admin := flag.String("admin-listen", "127.0.0.1:0", "Address of /metrics and /debug/pprof.")
	upstream := flag.String("upstream", "", "host:port of the runtime.")
	tokenFile := flag.String("upstream-token-file", "", "File holding the runtime's token.")
	flag.Parse()
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Fatal(err)
	}
	p := &proxy{upstream: *upstream, token: strings.TrimSpace(string(token))}
	upgrader := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, Subprotocols: []string{protocol.Subprotocol},
		CheckOrigin: func(*http.Request) bool { return true }}
	p.upgrader = &upgrader

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	serve(*admin, mux, "admin")
	serve(*listen, p, "proxy")
	select {}
}

func serve(addr string, h http.Handler, what string) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s listening on %s", what, l.Addr())
	go func() { log.Fatal((&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(l)) }()
}

type proxy struct {
	upstream, token string
	upgrader        *websocket.Upgrader
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	up, resp, err := d.Dial("ws://"+p.upstream+r.URL.RequestURI(), http.Header{"Authorization": {"Bearer " + p.token}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, err := p.upgrader.Upgrade(w, r, nil)
	if err != nil {
		_ = up.Close()
		return
	}
	go copyFrames(up, client)
	copyFrames(client, up)
}

func copyFrames(dst, src *websocket.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	for {
		kind, data, err := src.ReadMessage()
		if err != nil {
			return
		}
		if err := dst.WriteMessage(kind, data); err != nil {
			return
		}
	}
}

// Package load drives conversations over WebSockets for benchmarks and the
// load tool: closed-loop throughput, round trips at a fixed rate, and idle
// sockets held open. A round trip is a message sent until the end of the
// agent's turn that answers it (its turn_finished event): what a person in
// a chat waits for. One message per socket is outstanding at a time.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"tether.dev/tether/protocol"
)

// Target says how to reach the conversations under load.
type Target struct {
	// URL returns the socket URL of the i-th conversation.
	URL func(i int) string
	// Header is sent with every connection (Authorization).
	Header http.Header
	// SourceIPs spread connections over several loopback source addresses
	// (each has its own ephemeral ports); none uses the kernel's choice.
	SourceIPs []string
}

// Conn is one bound socket: a connection whose replay is over.
type Conn struct {
	ws     *websocket.Conn
	frames chan signal
	err    atomic.Value
	once   sync.Once
}

// signal is a frame a round trip waits for: an ack, an error, or the end of
// a turn.
type signal struct {
	kind, id, message string
}

var (
	runs         atomic.Int64
	turnFinished = []byte(`"event":"` + protocol.EventTurnFinished + `"`)
)

// Dial connects socket n to conversation conv and waits for its replay to
// end.
func (t Target) Dial(ctx context.Context, n, conv int) (*Conn, error) {
	d := websocket.Dialer{
		Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 30 * time.Second,
		ReadBufferSize: 1024, WriteBufferSize: 1024,
	}
	if len(t.SourceIPs) > 0 {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(t.SourceIPs[n%len(t.SourceIPs)])}, Timeout: 30 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	ws, resp, err := d.DialContext(ctx, t.URL(conv), t.Header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("socket %d: %w", n, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("socket %d, waiting for its replay: %w", n, err)
		}
		if h, _ := protocol.PeekHead(data); h.Type == protocol.TypeReplayComplete {
			break
		}
	}
	_ = ws.SetReadDeadline(time.Time{})
	return &Conn{ws: ws}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.ws.Close() }

// startReading delivers acks, errors and ends of turns until the socket
// ends.
func (c *Conn) startReading() {
	c.once.Do(func() { c.frames = make(chan signal, 64); go c.read() })
}

func (c *Conn) read() {
	defer close(c.frames)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err.Store(err)
			return
		}
		h, ok := protocol.PeekHead(data)
		switch {
		case !ok:
		case h.Type == protocol.TypeAck:
			c.frames <- signal{kind: h.Type, id: h.ID}
		case h.Type == protocol.TypeError:
			var f protocol.ServerFrame
			_ = json.Unmarshal(data, &f)
			c.frames <- signal{kind: h.Type, id: h.ID, message: f.Code + ": " + f.Message}
		case h.Type == protocol.TypeEvent && bytes.Contains(data, turnFinished):
			c.frames <- signal{kind: protocol.EventTurnFinished}
		}
	}
}

func (c *Conn) send(id string) error {
	data, err := json.Marshal(protocol.ClientFrame{Type: protocol.TypeMessage, ID: id, Text: "ping " + id})
	if err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// roundTrip sends a message and waits for its ack and the end of its turn,
// which may come in either order.
func (c *Conn) roundTrip(id string) error {
	if err := c.send(id); err != nil {
		return err
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	acked, finished := false, false
	for !acked || !finished {
		select {
		case s, ok := <-c.frames:
			if !ok {
				if err, ok := c.err.Load().(error); ok {
					return err
				}
				return errors.New("socket closed")
			}
			switch {
			case s.kind == protocol.TypeAck && s.id == id:
				acked = true
			case s.kind == protocol.TypeError && s.id == id:
				return fmt.Errorf("message %s refused: %s", id, s.message)
			case s.kind == protocol.EventTurnFinished:
				finished = true
			}
		case <-timeout.C:
			return fmt.Errorf("message %s: no ack and end of turn within 30 s", id)
		}
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Messages int
	Elapsed  time.Duration
	// Latencies of every round trip, sorted.
	Latencies []time.Duration
}

// PerSecond is the round trips completed per second.
func (r Result) PerSecond() float64 { return float64(r.Messages) / r.Elapsed.Seconds() }

// Quantile is the q-th latency quantile (0 < q <= 1).
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.Latencies))+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Merge combines the round trips of several runs.
func Merge(results ...Result) Result {
	var m Result
	for _, r := range results {
		m.Messages += r.Messages
		m.Elapsed += r.Elapsed
		m.Latencies = append(m.Latencies, r.Latencies...)
	}
	slices.Sort(m.Latencies)
	return m
}

// ClosedLoop sends messages round trips back to back, spread evenly over
// the sockets.
func ClosedLoop(conns []*Conn, messages int) (Result, error) {
	return run(conns, messages, 0)
}

// FixedRate sends messages at rate a second in all, spread evenly over the
// sockets, and measures each round trip.
func FixedRate(conns []*Conn, rate float64, messages int) (Result, error) {
	return run(conns, messages, rate/float64(len(conns)))
}

func run(conns []*Conn, messages int, perConnRate float64) (Result, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     = make([]time.Duration, 0, messages)
		firstEr error
	)
	prefix := "r" + strconv.FormatInt(runs.Add(1), 10) + "-" // ids are never reused
	start := time.Now()
	for i, c := range conns {
		c.startReading()
		share := messages / len(conns)
		if i < messages%len(conns) {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, share)
			var tick *time.Ticker
			if perConnRate > 0 {
				period := time.Duration(float64(time.Second) / perConnRate)
				// Stagger the sockets over one period.
				time.Sleep(period * time.Duration(i) / time.Duration(len(conns)))
				tick = time.NewTicker(period)
				defer tick.Stop()
			}
			for n := range share {
				if tick != nil {
					<-tick.C
				}
				t0 := time.Now()
				if err := c.roundTrip(prefix + strconv.Itoa(i) + "-" + strconv.Itoa(n)); err != nil {
					mu.Lock()
					firstEr = cmpErr(firstEr, err)
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	return Result{Messages: len(all), Elapsed: elapsed, Latencies: all}, firstEr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// DialAll opens n sockets spread over convs conversations, with up to
// parallel dials at once.
func (t Target) DialAll(ctx context.Context, n, convs, parallel int) ([]*Conn, error) {
	conns := make([]*Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := t.Dial(ctx, i, i%convs)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		CloseAll(conns)
		return nil, err
	}
	return conns, nil
}

// CloseAll closes the sockets.
func CloseAll(conns []*Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"tether.dev/tether/eventlog"
	"tether.dev/tether/protocol"
	"tether.dev/tether/runtime/conversation"
	"tether.dev/tether/runtime/gatewayauth"
)

const (
	writeWait  = 10 * time.Second
	pongWait   = 60 * time.Second
	pingPeriod = 25 * time.Second // below the 60 s idle timeout of common proxies
	outboxSize = 64
)

// Server is the internal WebSocket endpoint the gateway dials. Only the
// gateway may use it: it presents a token of its ServiceAccount for the
// runtime's audience, which Gateway checks (package gatewayauth). It serves
// only the conversations its Host runs; for any other it answers 409 before
// upgrading, so the gateway resolves the owner again.
type Server struct {
	Host    *Host
	Gateway TokenVerifier
}

// TokenVerifier tells the gateway's token from any other: nil for the
// gateway's, an error wrapping gatewayauth.ErrRefused for another, any other
// error when it cannot tell now.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) error
}

var upgrader = websocket.Upgrader{
	Subprotocols:    []string{protocol.Subprotocol},
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	// Only the gateway dials this endpoint, with the token; browsers never do.
	CheckOrigin: func(*http.Request) bool { return true },
}

// ServeHTTP binds one socket to a conversation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if err := s.Gateway.Verify(r.Context(), token); err != nil {
		if errors.Is(err, gatewayauth.ErrRefused) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ctrl.LoggerFrom(r.Context()).Error(err, "cannot verify the gateway's token now")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "cannot verify the caller now", http.StatusServiceUnavailable)
		return
	}
	ns, name, cursor, err := protocol.ParseConversationURL(r.URL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	conv, ok := s.Host.Await(r.Context(), types.NamespacedName{Namespace: ns, Name: name})
	if !ok {
		http.Error(w, "this pod does not own the conversation", http.StatusConflict)
		return
	}
	sub, err := conv.Subscribe(r.Context(), cursor)
	if err != nil {
		switch {
		case errors.Is(err, conversation.ErrNotOwner):
			http.Error(w, "this pod does not own the conversation", http.StatusConflict)
		case errors.Is(err, conversation.ErrTooManySubscribers):
			http.Error(w, "too many sockets on this conversation", http.StatusTooManyRequests)
		case errors.Is(err, eventlog.ErrHole):
			ctrl.LoggerFrom(r.Context()).Error(err, "refused a replay: the event log has a hole", "conversation", types.NamespacedName{Namespace: ns, Name: name})
			http.Error(w, "the conversation's history has a hole: an operator must look at its event log", http.StatusServiceUnavailable)
		default:
			http.Error(w, "the event log is unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		sub.Close()
		return // the upgrader answered the client
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		sub.Close()
		closeWith(ws, protocol.CloseBadRequest, "subprotocol "+protocol.Subprotocol+" required")
		return
	}
	(&session{ws: ws, conv: conv, sub: sub, outbox: make(chan protocol.ServerFrame, outboxSize), done: make(chan struct{})}).run(r)
}

// session is one bound socket: the writer goroutine owns every write; the
// reader applies client frames and queues their acks.
type session struct {
	ws     *websocket.Conn
	conv   *conversation.Conversation
	sub    *conversation.Subscription
	outbox chan protocol.ServerFrame
	done   chan struct{}
}

func (s *session) run(r *http.Request) {
	log := ctrl.LoggerFrom(r.Context())
	go s.read(r)
	defer s.sub.Close()
	ticker := time.NewTicker(pingPeriod)
	defer ticker.Stop()
	if err := s.sub.Replay(r.Context(), s.write); err != nil {
		if errors.Is(err, eventlog.ErrHole) {
			log.Error(err, "stopped a replay: the event log has a hole")
			closeWith(s.ws, protocol.CloseInternal, "the conversation's history has a hole: an operator must look at its event log")
			return
		}
		_ = s.ws.Close()
		return
	}
	for {
		select {
		case f, ok := <-s.sub.C:
			if !ok {
				closeWith(s.ws, s.sub.Code, s.sub.Reason)
				return
			}
			if err := s.write(*f); err != nil {
				_ = s.ws.Close()
				return
			}
		case f := <-s.outbox:
			if err := s.write(f); err != nil {
				_ = s.ws.Close()
				return
			}
		case <-ticker.C:
			if err := s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				_ = s.ws.Close()
				return
			}
		case <-s.done:
			log.V(1).Info("socket closed by its peer")
			_ = s.ws.Close()
			return
		}
	}
}

func (s *session) write(f protocol.ServerFrame) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_ = s.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return s.ws.WriteMessage(websocket.TextMessage, data)
}

// read applies the peer's frames until it goes away.
func (s *session) read(r *http.Request) {
	defer close(s.done)
	s.ws.SetReadLimit(protocol.MaxClientFrameBytes)
	_ = s.ws.SetReadDeadline(time.Now().Add(pongWait))
	s.ws.SetPongHandler(func(string) error { return s.ws.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		kind, data, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		_ = s.ws.SetReadDeadline(time.Now().Add(pongWait))
		var reply protocol.ServerFrame
		frame, err := protocol.DecodeClientFrame(data)
		switch {
		case kind != websocket.TextMessage:
			reply = protocol.ErrorFrame(protocol.CodeBadFrame, "", "frames are JSON text")
		case err != nil:
			// The refusal names the frame when it has an id, so the sender
			// (the gateway keeps what awaits an answer) can forget it.
			reply = errorReply(err, protocol.FrameID(data))
		default:
			frame.Subject = r.Header.Get(protocol.SubjectHeader)
			reply, err = s.conv.Submit(r.Context(), frame)
			if errors.Is(err, conversation.ErrNotOwner) {
				return // the subscription closes with CloseNotOwner
			}
			if err != nil {
				reply = errorReply(err, frame.ID)
			}
		}
		select {
		case s.outbox <- reply:
		default:
			// The peer sends faster than it reads its replies.
			closeWith(s.ws, protocol.CloseSlowConsumer, "too slow: reconnect and resume")
			return
		}
	}
}

// errorReply is the error frame for a refused frame. Only what may succeed
// when sent again is "unavailable": a frame the store refuses as too large
// or invalid will be refused every time.
func errorReply(err error, id string) protocol.ServerFrame {
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr):
		return protocol.ErrorFrame(perr.Code, id, perr.Message)
	case errors.Is(err, eventlog.ErrTooLarge):
		return protocol.ErrorFrame(protocol.CodeTooLarge, id, "not applied: the event would be over the event log's size limit")
	case errors.Is(err, eventlog.ErrInvalid):
		return protocol.ErrorFrame(protocol.CodeBadFrame, id, "not applied: the event log refuses it")
	}
	return protocol.ErrorFrame(protocol.CodeUnavailable, id, "not applied; send it again")
}

// closeWith sends a close frame (protocol.CloseMessage) with a deadline and
// closes the connection.
func closeWith(ws *websocket.Conn, code int, reason string) {
	_ = ws.WriteControl(websocket.CloseMessage, protocol.CloseMessage(code, reason), time.Now().Add(writeWait))
	_ = ws.Close()
}

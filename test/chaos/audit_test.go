package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/eventlog"
	"tether.dev/tether/eventlog/kubelog"
	"tether.dev/tether/eventlog/redislog"
	"tether.dev/tether/internal/testing/apiaudit"
	"tether.dev/tether/protocol"
)

// findings is what the audit counted, over every conversation.
type findings struct {
	conversations, events, sent, acked, answers int
	// violations by what was broken; the run passes when there are none.
	violations map[string][]string
	stale      []apiaudit.Finding
	inferred   []apiaudit.Finding // grants shown by a runtime's write, made by an interrupted write
	// interrupted counts writes the API server was killed while serving.
	interrupted map[string]int
	orphans     []apiaudit.Finding // chunks a fenced owner created: copies of committed events
	// timelines are what the API server's audit log holds of each stale
	// finding's conversation around it, for the report.
	timelines map[string][]string
	writes    map[string]int
	late      map[string]int
	// unanswered counts log writes that completed while the write giving
	// their pod the conversation was being answered (apiaudit.Verdict).
	unanswered map[string]int
	repeats    int
	// unservedFinished counts finished conversations the gateway would not
	// serve (their owner pod gone), audited from their stores.
	unservedFinished int
	// trimmed counts logs that retention had trimmed (the Agent's
	// store.retention.maxEvents): audited from the first kept event.
	trimmed int
	// latency is how long the API server took to answer the writes it
	// audited: what claims and placements waited on.
	latency apiaudit.Latency
	// owners is each conversation's status history, from the API server's
	// audit log: what the failover figures are measured on.
	owners *ownerHistory
}

func (a *findings) add(what, conv, format string, args ...any) {
	a.violations[what] = append(a.violations[what], conv+": "+fmt.Sprintf(format, args...))
}

func (a *findings) total() int {
	n := len(a.stale)
	for _, v := range a.violations {
		n += len(v)
	}
	return n
}

// audit checks every conversation: its log read back through the Ingress,
// its store's own history, what its client saw, and the API server's
// record of who wrote what.
func (w *world) audit(ctx context.Context, trs []*transcript) (*findings, error) {
	a := &findings{violations: map[string][]string{}}
	redisLog, err := redislog.New(redislog.Options{Addrs: []string{w.redis}, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() { _ = redisLog.Close() }()
	stores := map[string]eventlog.Log{"kubernetes": kubelog.New(w.kube), "redis": redisLog}
	logged := map[string][]protocol.ServerFrame{}
	// The pods there are now: a finished conversation whose owner is none
	// of them is not served through the gateway (4010), so its store is
	// read without asking it (one socket each at the auditor's connect
	// rate was most of a long run's audit).
	var pods corev1.PodList
	if err := w.kube.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	podUIDs := map[string]bool{}
	for _, p := range pods.Items {
		podUIDs[string(p.UID)] = true
	}
	for _, tr := range trs {
		a.conversations++
		var conv tetherv1alpha1.Conversation
		if err := w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: tr.name}, &conv); err != nil {
			return nil, fmt.Errorf("%s: %w", tr.name, err)
		}
		history, err := readStore(ctx, stores[tr.kind.store], eventlog.Key{Namespace: ns, Name: tr.name, UID: string(conv.UID)})
		if err != nil {
			a.add("store unreadable", tr.name, "%v", err)
		}
		// A finished conversation whose owner pod is gone is not served
		// through the gateway (docs/reliability.md): audit what its store
		// holds.
		notServed := isFinished(&conv) && (conv.Status.Owner == nil || !podUIDs[conv.Status.Owner.UID])
		var events []protocol.ServerFrame
		var complete bool
		if !notServed {
			events, complete, err = w.readBack(tr.name)
			// Its owner gone since the list: the gateway says so.
			notServed = err != nil && isFinished(&conv) && strings.Contains(err.Error(), "4010")
		}
		switch {
		case notServed:
			a.unservedFinished++
			events, complete = framesOf(history), true
		case err != nil:
			a.add("log unreadable", tr.name, "%v", err)
			continue
		}
		a.events += len(events)
		if !complete {
			a.add("history incomplete", tr.name, "the replay from 0 does not say complete")
		}
		a.checkLog(tr, events)
		a.checkStore(tr, events, history, &conv)
		a.checkClient(tr, events)
		logged[tr.name] = events
	}
	entries, err := apiaudit.Read(w.Audit)
	if err != nil {
		return nil, err
	}
	v := apiaudit.Judge(entries, ns, apiaudit.RuntimeIn(ns))
	a.latency = apiaudit.Latencies(entries, 10*time.Minute)
	a.owners = ownersFrom(apiaudit.States(entries, ns))
	a.writes, a.late, a.interrupted, a.unanswered = v.Writes, v.Late, v.Interrupted, v.Unanswered
	names := map[string]bool{}
	for _, tr := range trs {
		names[tr.name] = true
	}
	a.timelines = map[string][]string{}
	for _, f := range v.Stale {
		if names[f.Conversation] {
			a.stale = append(a.stale, f)
			if len(a.timelines) < 10 {
				a.timelines[f.Conversation] = apiaudit.Timeline(entries, ns, f.Conversation, f.At, 24)
			}
		}
	}
	for _, f := range v.Inferred {
		if names[f.Conversation] {
			a.inferred = append(a.inferred, f)
		}
	}
	for _, f := range v.Orphans {
		if names[f.Conversation] {
			a.orphans = append(a.orphans, f)
			if err := w.checkOrphan(ctx, f, logged[f.Conversation]); err != nil {
				a.add("orphan chunk is not a copy of the log", f.Conversation, "%s: %v", f.Object, err)
			}
		}
	}
	return a, nil
}

// checkLog: contiguous sequence numbers; every acknowledged message once;
// no message twice; echo: every message answered once, in order; approval:
// one prompt, and the client's answer applied once, to it; python: each
// answer applied to the question the client answered, and checkRefunds.
func (a *findings) checkLog(tr *transcript, events []protocol.ServerFrame) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ids := map[string]int{}
	var users, replies []string
	var prompts []int64
	var answers []protocol.AnswerData
	var answerIDs []string
	// The log starts at 1, or at the first event retention kept.
	first := int64(1)
	if len(events) > 0 {
		first = events[0].Seq
	}
	trimmed := first > 1
	if trimmed {
		a.trimmed++
		// What the client saw before the first kept event cannot be
		// checked against the log: its messages, and a reply whose
		// message is gone.
		for len(events) > 0 && events[0].Event != protocol.EventUserMessage {
			events = events[1:]
		}
	}
	seenAt := map[string]int64{}
	for seq, e := range tr.events {
		if e.id != "" {
			seenAt[e.id] = seq
		}
	}
	for i, e := range events {
		if i > 0 && e.Seq != events[i-1].Seq+1 {
			a.add("gap or reorder in the log", tr.name, "event %d has seq %d after %d", i, e.Seq, events[i-1].Seq)
			return
		}
		if e.ID != "" && (e.Event == protocol.EventUserMessage || e.Event == protocol.EventAnswer) {
			ids[e.ID]++
		}
		switch e.Event {
		case protocol.EventUserMessage:
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			users = append(users, d.Text)
		case protocol.EventAssistantMessage:
			var d protocol.TextData
			_ = json.Unmarshal(e.Data, &d)
			replies = append(replies, d.Text)
		case protocol.EventPrompt:
			prompts = append(prompts, e.Seq)
		case protocol.EventAnswer:
			var d protocol.AnswerData
			_ = json.Unmarshal(e.Data, &d)
			answers = append(answers, d)
			answerIDs = append(answerIDs, e.ID)
		}
	}
	a.sent += len(tr.sent)
	for id, text := range tr.sent {
		if !tr.acked[id] {
			continue
		}
		a.acked++
		if at, ok := seenAt[id]; trimmed && (!ok || at < events[0].Seq) {
			continue // recorded before the first kept event, or cannot tell
		}
		if ids[id] == 0 {
			a.add("acknowledged message lost", tr.name, "%s (%q) is not in the log", id, text)
		}
	}
	for id, n := range ids {
		if n > 1 {
			a.add("message applied twice", tr.name, "%s is in the log %d times", id, n)
		}
	}
	switch tr.kind.agent {
	case "echo":
		if detail, ok := answeredOnceEach(users, replies, trimmed, tr.sent); !ok {
			a.add("not answered once each, in order", tr.name, "%s", detail)
		}
	case "approval":
		if len(prompts) > 1 {
			a.add("question asked twice", tr.name, "prompts at %v", prompts)
		}
		if len(answers) > 1 {
			a.add("answer applied twice", tr.name, "%d answers", len(answers))
		}
		a.answers += len(answers)
		for i, d := range answers {
			seq, ours := tr.answers[answerIDs[i]]
			if !ours {
				a.add("answer nobody gave", tr.name, "answer %s", answerIDs[i])
				continue
			}
			if len(prompts) == 0 || d.PromptSeq != prompts[0] || seq != prompts[0] {
				a.add("answer applied to another question", tr.name, "applied to %d, the client answered %d, the prompt is %v", d.PromptSeq, seq, prompts)
			}
		}
	case "python":
		a.answers += len(answers)
		for i, d := range answers {
			seq, ours := tr.answers[answerIDs[i]]
			switch {
			case !ours:
				a.add("answer nobody gave", tr.name, "answer %s", answerIDs[i])
			case d.PromptSeq != seq:
				a.add("answer applied to another question", tr.name, "answer %s applied to %d, the client answered %d", answerIDs[i], d.PromptSeq, seq)
			}
		}
		if !trimmed { // the refund checks read a history from its start
			a.checkRefunds(tr, events)
		}
	}
}

// checkStore: the store's own history holds exactly the events the log
// served, and every event's epoch is one its writer held in order: epochs
// never go back along the history, and none is above the conversation's.
func (a *findings) checkStore(tr *transcript, events []protocol.ServerFrame, history []eventlog.Event, conv *tetherv1alpha1.Conversation) {
	if len(history) != len(events) {
		a.add("store and log disagree", tr.name, "the store holds %d events, the log served %d", len(history), len(events))
	}
	epoch := int64(0)
	if conv.Status.Lease != nil {
		epoch = conv.Status.Lease.Epoch
	}
	var prev int64
	for _, e := range history {
		if e.Epoch < prev {
			a.add("stale write in the store's history", tr.name, "event %d of epoch %d after an event of epoch %d", e.Seq, e.Epoch, prev)
		}
		if e.Epoch > epoch {
			a.add("store ahead of the status", tr.name, "event %d of epoch %d, the status says %d", e.Seq, e.Epoch, epoch)
		}
		prev = max(prev, e.Epoch)
	}
}

// checkClient: every event the client saw is the log's event of that seq;
// it saw them once (the server sent none again) and in order (checked as
// they came).
func (a *findings) checkClient(tr *transcript, events []protocol.ServerFrame) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, v := range tr.violations {
		a.add("client saw a gap or a changed event", tr.name, "%s", v)
	}
	a.repeats += tr.repeats
	if tr.repeats > 0 {
		a.add("event sent twice to a client", tr.name, "%d events at or below the client's cursor", tr.repeats)
	}
	seqs := make([]int64, 0, len(tr.events))
	for s := range tr.events {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	first := int64(1)
	if len(events) > 0 {
		first = events[0].Seq
	}
	for _, s := range seqs {
		got := tr.events[s]
		if s < first && first > 1 {
			continue // retention dropped it from the log since
		}
		if s < first || s >= first+int64(len(events)) {
			a.add("client saw an event the log lacks", tr.name, "seq %d (%s)", s, got.event)
			continue
		}
		if want := events[s-first]; want.Event != got.event || want.ID != got.id {
			a.add("client saw another event than the log's", tr.name, "seq %d: %s %s, the log has %s %s", s, got.event, got.id, want.Event, want.ID)
		}
	}
}

// checkOrphan checks that a chunk a fenced owner created holds exactly the
// events the log served for its range (when it still exists: it goes with
// its conversation).
func (w *world) checkOrphan(ctx context.Context, f apiaudit.Finding, events []protocol.ServerFrame) error {
	var chunk tetherv1alpha1.ConversationLogChunk
	err := w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: strings.TrimPrefix(f.Object, "chunk ")}, &chunk)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(chunk.Events) > 0 && chunk.Events[0].Type == kubelog.SnapshotType {
		// A snapshot a fenced owner saved: harmless as long as the log
		// never names it (its head is written under the epoch check).
		var head tetherv1alpha1.ConversationLog
		if err := w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: f.Conversation}, &head); err != nil {
			return client.IgnoreNotFound(err)
		}
		if head.Spec.Snapshot != nil && head.Spec.Snapshot.Name == chunk.Name {
			return fmt.Errorf("the log names a snapshot its owner saved after a newer epoch wrote")
		}
		return nil
	}
	first := int64(1)
	if len(events) > 0 {
		first = events[0].Seq
	}
	for _, e := range chunk.Events {
		if e.Seq < first && first > 1 {
			continue // retention dropped it from the log since
		}
		if e.Seq < first || e.Seq >= first+int64(len(events)) {
			return fmt.Errorf("event %d is not in the log (events %d..%d)", e.Seq, first, first+int64(len(events))-1)
		}
		// Messages reach clients as stored; other events' data is shown
		// to clients in part (a step's result is not).
		got := events[e.Seq-first]
		message := e.Type == protocol.EventUserMessage || e.Type == protocol.EventAssistantMessage
		if got.Event != e.Type || got.ID != e.ClientID || (message && !jsonEqual(got.Data, []byte(e.Data))) {
			return fmt.Errorf("event %d is %s %s, the log's is %s %s", e.Seq, e.Type, e.ClientID, got.Event, got.ID)
		}
	}
	return nil
}

// jsonEqual reports whether two JSON documents hold the same value.
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// readStore reads a conversation's whole history from its store.
func readStore(ctx context.Context, log eventlog.Log, k eventlog.Key) ([]eventlog.Event, error) {
	var all []eventlog.Event
	after := int64(0)
	for {
		batch, err := log.Read(ctx, k, after, eventlog.MaxReadEvents)
		if err != nil {
			return all, err
		}
		if len(batch) == 0 {
			return all, nil
		}
		all = append(all, batch...)
		after = batch[len(batch)-1].Seq
	}
}

// readBack reads a conversation's durable events from the start through
// the Ingress, up to replay_complete.
func (w *world) readBack(name string) ([]protocol.ServerFrame, bool, error) {
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	u := *ingress + protocol.ConversationPath(ns, name) + "?after=0"
	var lastErr error
	// A rolled gateway, a busy runtime, or the auditor's connect rate (it
	// reads every conversation as one subject): pause and try again.
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		ws, resp, err := d.Dial(u, http.Header{"Host": {*host}, "Authorization": {"Bearer " + w.token}})
		var refusal string
		if resp != nil && resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			_ = resp.Body.Close()
			refusal = fmt.Sprintf(" (HTTP %d: %s)", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		if err != nil {
			// What the gateway answered says why (a 503 is a store that
			// is down, or a log with a hole): keep it for the report.
			lastErr = fmt.Errorf("%w%s", err, refusal)
			continue
		}
		events, complete, err := readReplay(ws)
		_ = ws.Close()
		if err == nil {
			return events, complete, nil
		}
		lastErr = err
		if strings.Contains(err.Error(), "4010") {
			break // finished, and its owner gone: not served
		}
	}
	return nil, false, fmt.Errorf("reading the log of %s: %w", name, lastErr)
}

func readReplay(ws *websocket.Conn) ([]protocol.ServerFrame, bool, error) {
	var events []protocol.ServerFrame
	for {
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		var f protocol.ServerFrame
		if err := ws.ReadJSON(&f); err != nil {
			return nil, false, err
		}
		switch f.Type {
		case protocol.TypeEvent:
			events = append(events, f)
		case protocol.TypeReplayComplete:
			// Complete, or every event retention kept: an Agent keeps its
			// store.retention.maxEvents latest, and a replay from 0 of a
			// longer history starts at the first kept (Complete false).
			n := int64(len(events))
			whole := f.Complete != nil && *f.Complete && f.LastSeq == n
			kept := f.FirstSeq > 1 && n > 0 && events[0].Seq == f.FirstSeq && f.LastSeq == events[n-1].Seq
			return events, whole || kept, nil
		}
	}
}

func isFinished(c *tetherv1alpha1.Conversation) bool {
	return c.Status.Phase == tetherv1alpha1.PhaseSucceeded || c.Status.Phase == tetherv1alpha1.PhaseFailed
}

// framesOf is a store's history as the event frames a replay would carry.
func framesOf(history []eventlog.Event) []protocol.ServerFrame {
	out := make([]protocol.ServerFrame, 0, len(history))
	for _, e := range history {
		out = append(out, protocol.EventFrame(e.Seq, e.Type, e.ClientID, e.Time, e.Data))
	}
	return out
}

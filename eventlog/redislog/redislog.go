// Package redislog keeps conversations' event logs in Redis Streams, for
// scale: one stream and one small hash per conversation, the epoch fence
// checked atomically with the append by a script on the server, stream ids
// derived from sequence numbers, and retention by trimming the stream.
//
// It uses go-redis's universal client, so one address is a single server,
// several are a Redis Cluster, and a master name selects Sentinel.
//
// When an operation fails for any reason other than the log's own errors
// (ErrFenced, ErrUnknownConversation, ErrInvalid) — Redis down, a timeout —
// an append may or may not have landed, but never in part: read Bounds before
// appending again.
package redislog

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"tether.dev/tether/eventlog"
)

// Options say how to reach Redis.
type Options struct {
	// Addrs: one for a single server, several for a Cluster, or the
	// sentinels with MasterName.
	Addrs      []string
	MasterName string
	DB         int
	Username   string
	Password   string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// KeyPrefix is prepended to every key ("tether:" by default).
	KeyPrefix string
	// Timeout bounds each operation (5 s by default).
	Timeout time.Duration
	// MinReplicas, when above 0, makes an append wait (WAIT) until that
	// many replicas of the conversation's master have it, within Timeout,
	// before it is acknowledged; otherwise the append fails as one whose
	// outcome is unknown. Redis replicates asynchronously: without it, an
	// append the master acknowledged and then crashed before sending on is
	// lost to a failover (docs/operations.md).
	MinReplicas int
	// Now is the clock events are stamped with (time.Now by default).
	Now func() time.Time
}

// Log is an event log in Redis.
type Log struct {
	client      redis.UniversalClient
	prefix      string
	timeout     time.Duration
	now         func() time.Time
	minReplicas int
}

var _ eventlog.Log = (*Log)(nil)

// New connects lazily: the first operation dials.
func New(opts Options) (*Log, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redislog: no Redis address")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "tether:"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: opts.Addrs, MasterName: opts.MasterName, DB: opts.DB,
		Username: opts.Username, Password: opts.Password, TLSConfig: opts.TLS,
		DialTimeout: opts.Timeout, ReadTimeout: opts.Timeout, WriteTimeout: opts.Timeout,
		// A failed command is not retried here: a retried append could land
		// twice. The caller decides, after reading Bounds.
		MaxRetries: -1,
	})
	return &Log{client: client, prefix: opts.KeyPrefix, timeout: opts.Timeout, now: opts.Now, minReplicas: opts.MinReplicas}, nil
}

// keys returns the meta hash and stream keys of a conversation; the braces
// are a hash tag that keeps both in one Cluster slot.
func (l *Log) keys(k eventlog.Key) []string {
	tag := l.prefix + "{" + k.Namespace + "/" + k.Name + "}"
	return []string{tag + ":meta", tag + ":events"}
}

func (l *Log) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, l.timeout)
}

// Claim implements eventlog.Log.
func (l *Log) Claim(ctx context.Context, k eventlog.Key, epoch int64) (eventlog.Bounds, error) {
	if err := eventlog.ValidateClaim(epoch); err != nil {
		return eventlog.Bounds{}, err
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	var reply []string
	var err error
	if l.minReplicas > 0 {
		reply, err = l.runReplicated(ctx, k, "claiming", claimScript, []any{epoch, eventlog.NewLogID()})
	} else {
		reply, err = claimScript.Run(ctx, l.client, l.keys(k), epoch, eventlog.NewLogID()).StringSlice()
	}
	if err != nil {
		l.relearn(ctx)
		return eventlog.Bounds{}, fmt.Errorf("redislog: claiming %s: %w", k, err)
	}
	if err := replyError(k, reply, epoch); err != nil {
		return eventlog.Bounds{}, err
	}
	if len(reply) < 5 {
		return eventlog.Bounds{}, fmt.Errorf("redislog: unexpected reply %q for %s", reply, k)
	}
	return parseBounds(reply[1], reply[2], reply[3], reply[4])
}

// Append implements eventlog.Log.
func (l *Log) Append(ctx context.Context, k eventlog.Key, epoch int64, events []eventlog.Event) (int64, error) {
	if err := eventlog.ValidateAppend(epoch, events); err != nil {
		return 0, err
	}
	args := make([]any, 0, 2+3*len(events))
	args = append(args, epoch, l.now().UnixNano())
	for _, e := range events {
		args = append(args, e.Type, e.ClientID, string(e.Data))
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	var reply []string
	var err error
	if l.minReplicas > 0 {
		reply, err = l.runReplicated(ctx, k, "appending to", appendScript, args)
	} else {
		reply, err = appendScript.Run(ctx, l.client, l.keys(k), args...).StringSlice()
	}
	if err != nil {
		l.relearn(ctx)
		return 0, fmt.Errorf("redislog: appending to %s (the append may or may not have landed, whole): %w", k, err)
	}
	if err := replyError(k, reply, epoch); err != nil {
		return 0, err
	}
	return strconv.ParseInt(reply[1], 10, 64)
}

// runReplicated runs a writing script and then waits, on the same
// connection to the conversation's master, until minReplicas replicas have
// what it wrote. what names the operation in errors.
func (l *Log) runReplicated(ctx context.Context, k eventlog.Key, what string, script *redis.Script, args []any) ([]string, error) {
	keys := l.keys(k)
	var node redis.Cmdable = l.client
	if cc, ok := l.client.(*redis.ClusterClient); ok {
		master, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, fmt.Errorf("redislog: %s %s (nothing written: no master for it): %w", what, k, err)
		}
		node = master
	}
	// EVAL, not EVALSHA: a master just promoted has no scripts loaded,
	// and a NOSCRIPT would cost the WAIT behind it its whole timeout.
	pipe := node.Pipeline()
	eval := script.Eval(ctx, pipe, keys, args...)
	wait := pipe.Do(ctx, "wait", l.minReplicas, l.timeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	reply, err := eval.StringSlice()
	if err != nil {
		l.relearn(ctx)
		return nil, fmt.Errorf("redislog: %s %s (it may or may not have landed, whole): %w", what, k, err)
	}
	if len(reply) > 0 && reply[0] != "OK" {
		return reply, nil // refused: nothing written, nothing to wait for
	}
	n, err := wait.Int()
	if err != nil || n < l.minReplicas {
		return nil, fmt.Errorf("redislog: %s %s: on the master, but on %d of %d replicas within %s (it may be lost to a failover): %w",
			what, k, n, l.minReplicas, l.timeout, errors.Join(err, errNotReplicated))
	}
	return reply, nil
}

// relearn, after a request failed, has a Cluster client learn the slots
// afresh: a master that failed over is not asked again (it retries no
// command itself, so it would not notice on its own for a long while).
func (l *Log) relearn(ctx context.Context) {
	if cc, ok := l.client.(*redis.ClusterClient); ok {
		cc.ReloadState(context.WithoutCancel(ctx)) // the request's own time may be up
	}
}

// errNotReplicated is an append its master has but not yet MinReplicas of
// its replicas.
var errNotReplicated = errors.New("not replicated")

// Read implements eventlog.Log. The bounds and the entries are read in one
// transaction, so what the stream lacks is a hole, not a race with a trim.
func (l *Log) Read(ctx context.Context, k eventlog.Key, after int64, limit int) ([]eventlog.Event, error) {
	limit, err := eventlog.ValidateRead(after, limit)
	if err != nil {
		return nil, err
	}
	keys := l.keys(k)
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	var meta *redis.SliceCmd
	var entries *redis.XMessageSliceCmd
	if _, err := l.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		meta = p.HMGet(ctx, keys[0], "first", "last", "epoch", "id")
		entries = p.XRangeN(ctx, keys[1], strconv.FormatInt(after+1, 10)+"-0", "+", int64(limit))
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		l.relearn(ctx)
		return nil, fmt.Errorf("redislog: reading %s: %w", k, err)
	}
	b, err := boundsOf(k, meta.Val())
	if err != nil {
		return nil, err
	}
	out := make([]eventlog.Event, 0, len(entries.Val()))
	for _, m := range entries.Val() {
		e, err := parseEvent(m)
		if err != nil {
			return nil, fmt.Errorf("redislog: %s: %w", k, err)
		}
		if e.Seq > b.LastSeq {
			break // not committed by the meta hash: never served
		}
		out = append(out, e)
	}
	if err := eventlog.CheckRead(k, b, after, limit, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Bounds implements eventlog.Log.
func (l *Log) Bounds(ctx context.Context, k eventlog.Key) (eventlog.Bounds, error) {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	v, err := l.client.HMGet(ctx, l.keys(k)[0], "first", "last", "epoch", "id").Result()
	if err != nil {
		l.relearn(ctx)
		return eventlog.Bounds{}, fmt.Errorf("redislog: reading the bounds of %s: %w", k, err)
	}
	return boundsOf(k, v)
}

// boundsOf parses the meta hash's first, last, epoch and id.
func boundsOf(k eventlog.Key, v []any) (eventlog.Bounds, error) {
	if len(v) < 4 || v[0] == nil {
		return eventlog.Bounds{}, fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	field := func(i int) string { s, _ := v[i].(string); return s }
	return parseBounds(field(0), field(1), field(2), field(3))
}

// Trim implements eventlog.Log.
func (l *Log) Trim(ctx context.Context, k eventlog.Key, epoch int64, keep int) error {
	if err := eventlog.ValidateTrim(epoch, keep); err != nil {
		return err
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	reply, err := trimScript.Run(ctx, l.client, l.keys(k), epoch, keep).StringSlice()
	if err != nil {
		l.relearn(ctx)
		return fmt.Errorf("redislog: trimming %s: %w", k, err)
	}
	return replyError(k, reply, epoch)
}

// Delete implements eventlog.Log.
func (l *Log) Delete(ctx context.Context, k eventlog.Key) error {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	if err := l.client.Del(ctx, l.keys(k)...).Err(); err != nil {
		return fmt.Errorf("redislog: deleting %s: %w", k, err)
	}
	return nil
}

// Close implements eventlog.Log.
func (l *Log) Close() error { return l.client.Close() }

// AddHook adds a go-redis hook to every command the log sends (tracing,
// metrics, or a test's fault injection).
func (l *Log) AddHook(h redis.Hook) { l.client.AddHook(h) }

// Ping checks that Redis answers.
func (l *Log) Ping(ctx context.Context) error {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	return l.client.Ping(ctx).Err()
}

func replyError(k eventlog.Key, reply []string, epoch int64) error {
	if len(reply) == 0 {
		return fmt.Errorf("redislog: empty reply for %s", k)
	}
	switch reply[0] {
	case "OK":
		return nil
	case "FENCED":
		return fmt.Errorf("%w: %s claimed at epoch %s, not %d", eventlog.ErrFenced, k, reply[1], epoch)
	case "UNKNOWN":
		return fmt.Errorf("%w: %s", eventlog.ErrUnknownConversation, k)
	}
	return fmt.Errorf("redislog: unexpected reply %q for %s", reply, k)
}

func parseBounds(first, last, epoch, id string) (eventlog.Bounds, error) {
	b := eventlog.Bounds{LogID: id}
	var err1, err2, err3 error
	b.FirstSeq, err1 = strconv.ParseInt(first, 10, 64)
	b.LastSeq, err2 = strconv.ParseInt(last, 10, 64)
	b.Epoch, err3 = strconv.ParseInt(epoch, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return eventlog.Bounds{}, fmt.Errorf("redislog: corrupt bounds: %w", err)
	}
	return b, nil
}

func parseEvent(m redis.XMessage) (eventlog.Event, error) {
	seqText, _, ok := strings.Cut(m.ID, "-")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil {
		return eventlog.Event{}, fmt.Errorf("entry id %q is not <seq>-0", m.ID)
	}
	field := func(name string) string { s, _ := m.Values[name].(string); return s }
	epoch, err1 := strconv.ParseInt(field("e"), 10, 64)
	nanos, err2 := strconv.ParseInt(field("ts"), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return eventlog.Event{}, fmt.Errorf("entry %s: %w", m.ID, err)
	}
	e := eventlog.Event{Seq: seq, Epoch: epoch, Type: field("t"), ClientID: field("c"), Time: time.Unix(0, nanos)}
	if d := field("d"); d != "" {
		e.Data = json.RawMessage(d)
	}
	return e, nil
}

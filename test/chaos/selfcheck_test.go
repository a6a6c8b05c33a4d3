package chaos

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testing/await"
)

// TestAuditCatchesAStaleWriter shows the audit can fail. For each store a
// conversation's owner is frozen until another pod owns the conversation
// and has written to its log; then a broken owner (one that skips the
// fence, acting with the frozen pod's own credentials) appends to the log
// under its old epoch. The same audit TestChaos runs must report it: from
// the API server's audit log for the kubernetes store, and from the store's
// history on both.
func TestAuditCatchesAStaleWriter(t *testing.T) {
	w := newWorld(t)
	w.setUp(t)
	ctx := context.Background()
	var trs []*transcript
	for _, k := range agentKinds {
		if k.agent != "echo" {
			continue
		}
		tr := newTranscript(fmt.Sprintf("stale-%s-%d", k.store, w.start.Unix()%100000), auditor, w.token, k)
		if err := w.conversation(ctx, k, tr.name, auditor, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = w.Run("kubectl", "-n", ns, "delete", "conversation", tr.name, "--wait=false") })
		trs = append(trs, tr)
		tk := w.connect(tr, &connSet{}, 0, "")
		if err := tk.send("before"); err != nil {
			t.Fatal(err)
		}
		tk.waitAcked(ctx, 30*time.Second)

		var conv tetherv1alpha1.Conversation
		if err := w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: tr.name}, &conv); err != nil {
			t.Fatal(err)
		}
		old, epoch := conv.Status.Owner.Name, conv.Status.Lease.Epoch
		pid, err := w.ContainerPID(ns, old, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		await.UntilEvery(t, 60*time.Second, 100*time.Millisecond, tr.name+" owned by another pod", func() bool {
			var c tetherv1alpha1.Conversation
			return w.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: tr.name}, &c) == nil &&
				c.Status.Owner != nil && c.Status.Owner.Name != old && c.Status.Lease.Epoch > epoch
		})
		if err := tk.send("after the move"); err != nil {
			t.Fatal(err)
		}
		if !tk.waitAcked(ctx, 30*time.Second) {
			t.Fatal("the new owner did not acknowledge")
		}
		tk.close()
		if k.store == "kubernetes" {
			w.staleKubeAppend(t, old, tr.name, epoch)
		} else {
			w.staleRedisAppend(t, tr.name, epoch)
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	a, err := w.audit(ctx, trs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the audit of the broken writes:\n%s", strings.Join(flatten(a.violations), "\n"))
	for _, f := range a.stale {
		t.Logf("from the API server's audit log: %s", f)
	}
	if len(a.stale) == 0 {
		t.Error("the API server's audit log shows no stale write: the audit cannot see one")
	}
	if n := len(a.violations["stale write in the store's history"]); n != len(trs) {
		t.Errorf("the stores' histories show %d stale writes, want %d (one per store)", n, len(trs))
	}
}

// staleKubeAppend appends an event under epoch to a conversation's log head
// as pod would if it skipped the fence: with a token bound to pod, the
// head read fresh and written back with one more event of its old epoch.
func (w *world) staleKubeAppend(t *testing.T, pod, name string, epoch int64) {
	t.Helper()
	uid := w.kubectl(t, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")
	token := w.kubectl(t, "-n", ns, "create", "token", "tether-runtime", "--bound-object-kind", "Pod",
		"--bound-object-name", pod, "--bound-object-uid", uid, "--duration", "10m")
	cfg, err := clientcmd.BuildConfigFromFlags("", w.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	asPod := rest.AnonymousClientConfig(cfg)
	asPod.BearerToken = token
	c, err := client.New(asPod, client.Options{Scheme: w.kube.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var head tetherv1alpha1.ConversationLog
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &head); err != nil {
		t.Fatal(err)
	}
	head.Spec.LastSeq++
	head.Spec.Tail = append(head.Spec.Tail, tetherv1alpha1.LogEvent{
		Seq: head.Spec.LastSeq, Epoch: epoch, Type: "assistant_message", Time: metav1.NowMicro(), Data: `{"text":"written by a fenced owner"}`,
	})
	if err := c.Update(ctx, &head); err != nil {
		t.Fatalf("the stale append as %s: %v", pod, err)
	}
}

// staleRedisAppend appends an event under epoch to a conversation's Redis
// stream as an owner that skipped the fence would.
func (w *world) staleRedisAppend(t *testing.T, name string, epoch int64) {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: w.redis})
	defer func() { _ = r.Close() }()
	tag := "tether:{" + ns + "/" + name + "}"
	err := redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], 'last')) + 1
redis.call('XADD', KEYS[2], last .. '-0', 't', 'assistant_message', 'c', '', 'd', '{"text":"written by a fenced owner"}', 'e', ARGV[1], 'ts', ARGV[2])
redis.call('HSET', KEYS[1], 'last', last)
return last`).Run(context.Background(), r, []string{tag + ":meta", tag + ":events"}, epoch, time.Now().UnixNano()).Err()
	if err != nil {
		t.Fatal(err)
	}
}

func flatten(m map[string][]string) []string {
	var out []string
	for what, list := range m {
		for _, v := range list {
			out = append(out, what+": "+v)
		}
	}
	return out
}

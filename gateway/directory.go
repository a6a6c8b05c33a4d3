package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// The gateway reads Conversations through its cache and asks for a wake by
// patching one, and watches worker pods to check the owner a Conversation
// names before dialing it; that is all it may do.
// +kubebuilder:rbac:groups=tether.dev,resources=conversations,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Directory is what the gateway knows of Conversations and of the worker
// pods that own them: informer caches holding only what routing needs, and
// a notification whenever a conversation or its owner pod changes, so a
// held socket connects the moment its conversation names an owner that is
// ready, and a piped one lets go of an owner that is no longer it.
type Directory struct {
	cache  cache.Cache
	client client.Client

	mu      sync.Mutex
	waiters map[types.NamespacedName]map[*waiter]struct{}
}

// notSuspended selects the conversations the directory caches.
var notSuspended = fields.OneTermNotEqualSelector("status.phase", string(tetherv1alpha1.PhaseSuspended))

// waiter is one OnChange registration.
type waiter struct{ fn func() }

// DirectoryOptions configure a Directory.
type DirectoryOptions struct {
	// Namespaces limits the cache to these namespaces; all when empty.
	Namespaces []string
	// SyncPeriod is the informer's resync period (10 h by default).
	SyncPeriod *time.Duration
}

// NewDirectory builds a Directory reading through cfg. Start it with Start.
func NewDirectory(cfg *rest.Config, o DirectoryOptions) (*Directory, error) {
	scheme := newScheme()
	workers, err := labels.NewRequirement(tetherv1alpha1.AgentLabel, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("selecting worker pods: %w", err)
	}
	opts := cache.Options{
		Scheme: scheme, SyncPeriod: o.SyncPeriod,
		ByObject: map[client.Object]cache.ByObject{
			// Only conversations that are not Suspended: an idle fleet
			// is mostly Suspended, and listing it all made a new
			// replica wait (12 s for 100,000 here) before it could
			// route. A Suspended one is read from the API server when
			// a client comes for it (Get), and joins the cache once
			// woken.
			&tetherv1alpha1.Conversation{}: {Field: notSuspended, Transform: trimConversation},
			// Only worker pods, trimmed: a large cluster's other pods
			// never reach the gateway.
			&corev1.Pod{}: {Label: labels.NewSelector().Add(*workers), Transform: trimPod},
		},
	}
	if len(o.Namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.Namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("building the Conversation cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("building the API client: %w", err)
	}
	return &Directory{cache: c, client: cl, waiters: map[types.NamespacedName]map[*waiter]struct{}{}}, nil
}

// Start runs the cache until ctx ends; it returns once the cache has
// synced, or with an error.
func (d *Directory) Start(ctx context.Context) error {
	if err := d.cache.IndexField(ctx, &tetherv1alpha1.Conversation{}, tetherv1alpha1.OwnerField, ownerName); err != nil {
		return fmt.Errorf("indexing Conversations by owner: %w", err)
	}
	informer, err := d.cache.GetInformer(ctx, &tetherv1alpha1.Conversation{})
	if err != nil {
		return fmt.Errorf("watching Conversations: %w", err)
	}
	pods, err := d.cache.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("watching worker pods: %w", err)
	}
	notify := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if conv, ok := obj.(*tetherv1alpha1.Conversation); ok {
			d.notify(types.NamespacedName{Namespace: conv.Namespace, Name: conv.Name})
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: notify,
	}); err != nil {
		return fmt.Errorf("watching Conversations: %w", err)
	}
	notifyOwned := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			d.notifyOwnedBy(ctx, pod)
		}
	}
	if _, err := pods.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    notifyOwned,
		UpdateFunc: func(_, obj any) { notifyOwned(obj) },
		DeleteFunc: notifyOwned,
	}); err != nil {
		return fmt.Errorf("watching worker pods: %w", err)
	}
	errs := make(chan error, 1)
	go func() { errs <- d.cache.Start(ctx) }()
	if !d.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errs:
			return fmt.Errorf("the Conversation cache did not sync: %w", err)
		default:
			return fmt.Errorf("the Conversation cache did not sync: %w", ctx.Err())
		}
	}
	return nil
}

// Get returns the conversation as the cache holds it (trimmed), or nil if
// there is none. A conversation the cache does not hold is read from the
// API server: a Suspended one (not cached), or one created a moment ago
// that the watch has not brought yet (a client must not be told, for good,
// that there is no such conversation: found by the chaos suite). The read
// is one GET, bounded by the per-subject connect rate.
func (d *Directory) Get(ctx context.Context, key types.NamespacedName) (*tetherv1alpha1.Conversation, error) {
	conv := &tetherv1alpha1.Conversation{}
	err := d.cache.Get(ctx, key, conv)
	if apierrors.IsNotFound(err) {
		err = d.client.Get(ctx, key, conv)
		if err == nil {
			trimmed, terr := trimConversation(conv)
			if terr != nil {
				return nil, terr
			}
			conv = trimmed.(*tetherv1alpha1.Conversation)
		}
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return conv, nil
}

// Pod returns a worker pod as the cache holds it (trimmed), or nil if there
// is none.
func (d *Directory) Pod(ctx context.Context, key types.NamespacedName) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := d.cache.Get(ctx, key, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return pod, nil
}

// OnChange calls fn whenever the conversation or its owner pod changes (after the cache
// holds the change), until stop is called. fn runs on the informer's
// goroutine: it must not block.
func (d *Directory) OnChange(key types.NamespacedName, fn func()) (stop func()) {
	w := &waiter{fn: fn}
	d.mu.Lock()
	set := d.waiters[key]
	if set == nil {
		set = map[*waiter]struct{}{}
		d.waiters[key] = set
	}
	set[w] = struct{}{}
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(d.waiters[key], w)
		if len(d.waiters[key]) == 0 {
			delete(d.waiters, key)
		}
	}
}

// notifyOwnedBy notifies the watchers of the conversations whose status
// names pod as owner: its readiness, IP or existence decides their routes.
func (d *Directory) notifyOwnedBy(ctx context.Context, pod *corev1.Pod) {
	d.mu.Lock()
	watched := len(d.waiters) > 0
	d.mu.Unlock()
	if !watched {
		return
	}
	var owned tetherv1alpha1.ConversationList
	if err := d.cache.List(ctx, &owned, client.InNamespace(pod.Namespace), client.MatchingFields{tetherv1alpha1.OwnerField: pod.Name}); err != nil {
		return // the cache is stopping
	}
	for i := range owned.Items {
		d.notify(types.NamespacedName{Namespace: pod.Namespace, Name: owned.Items[i].Name})
	}
}

func (d *Directory) notify(key types.NamespacedName) {
	d.mu.Lock()
	fns := make([]func(), 0, len(d.waiters[key]))
	for w := range d.waiters[key] {
		fns = append(fns, w.fn)
	}
	d.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Wake asks the controller to place a Suspended conversation, by setting
// the wake annotation.
func (d *Directory) Wake(ctx context.Context, key types.NamespacedName) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, tetherv1alpha1.WakeAnnotation, time.Now().UTC().Format(time.RFC3339))
	conv := &tetherv1alpha1.Conversation{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := d.client.Patch(ctx, conv, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("waking %s: %w", key, err)
	}
	return nil
}

// trimConversation keeps what routing needs: who may connect, the phase,
// the owner and the epoch, and whether a wake was asked for. A busy
// cluster's conversations then cost the gateway a few hundred bytes each.
func trimConversation(obj any) (any, error) {
	conv, ok := obj.(*tetherv1alpha1.Conversation)
	if !ok {
		return obj, nil
	}
	trimmed := &tetherv1alpha1.Conversation{
		TypeMeta: conv.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: conv.Namespace, Name: conv.Name, UID: conv.UID,
			ResourceVersion: conv.ResourceVersion, DeletionTimestamp: conv.DeletionTimestamp,
		},
		Spec: tetherv1alpha1.ConversationSpec{AgentRef: conv.Spec.AgentRef, Subjects: conv.Spec.Subjects},
		Status: tetherv1alpha1.ConversationStatus{
			Phase: conv.Status.Phase, Owner: conv.Status.Owner,
		},
	}
	if conv.Status.Lease != nil {
		trimmed.Status.Lease = &tetherv1alpha1.ConversationLease{Epoch: conv.Status.Lease.Epoch}
	}
	if v, ok := conv.Annotations[tetherv1alpha1.WakeAnnotation]; ok {
		trimmed.Annotations = map[string]string{tetherv1alpha1.WakeAnnotation: v}
	}
	return trimmed, nil
}

// ownerName indexes a Conversation by the pod its status names as owner.
func ownerName(obj client.Object) []string {
	if conv, ok := obj.(*tetherv1alpha1.Conversation); ok && conv.Status.Owner != nil {
		return []string{conv.Status.Owner.Name}
	}
	return nil
}

// trimPod keeps what checking an owner needs: identity, the Agent label,
// phase, readiness and IPs.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            map[string]string{tetherv1alpha1.AgentLabel: pod.Labels[tetherv1alpha1.AgentLabel]},
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase, PodIP: pod.Status.PodIP, PodIPs: pod.Status.PodIPs},
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			trimmed.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return trimmed, nil
}

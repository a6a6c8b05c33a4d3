package fencing

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// ErrFenced means the writer's epoch is no longer the conversation's current
// one: another owner was assigned, or ownership was revoked. The writer must
// stop acting for the conversation.
var ErrFenced = errors.New("fenced: the conversation's epoch moved on")

// Holder is what an owner knows of its ownership: the pod it runs in and the
// epoch it was assigned.
type Holder struct {
	Pod   string
	Epoch int64
}

// Check returns ErrFenced (wrapped with the details) unless holder is the
// conversation's current owner at the current epoch.
func Check(conv *tetherv1alpha1.Conversation, holder Holder) error {
	lease := conv.Status.Lease
	switch {
	case lease == nil:
		return fmt.Errorf("%w: %s/%s has no lease", ErrFenced, conv.Namespace, conv.Name)
	case lease.Epoch != holder.Epoch:
		return fmt.Errorf("%w: %s/%s is at epoch %d, writer holds %d", ErrFenced, conv.Namespace, conv.Name, lease.Epoch, holder.Epoch)
	case lease.Holder != holder.Pod || conv.Status.Owner == nil || conv.Status.Owner.Name != holder.Pod:
		return fmt.Errorf("%w: %s/%s is held by %q, not %q", ErrFenced, conv.Namespace, conv.Name, lease.Holder, holder.Pod)
	}
	return nil
}

// UpdateStatus reads the conversation, checks that holder still owns it,
// applies mutate to it (the whole object, so a condition can carry the
// generation it saw) and writes its status with the resourceVersion it
// read. A conflict (someone wrote in between) starts over with a fresh read,
// so the ownership check always applies to the version being replaced.
// mutate must only touch the fields an owner writes (see docs/api.md) and
// may be called more than once.
//
// reader should read from the API server, not a cache: a cached read that
// lags only costs extra conflicts, but a fresh one avoids them.
func UpdateStatus(ctx context.Context, reader client.Reader, writer client.StatusWriter, key types.NamespacedName,
	holder Holder, mutate func(*tetherv1alpha1.Conversation) error,
) (*tetherv1alpha1.Conversation, error) {
	return UpdateStatusFrom(ctx, nil, reader, writer, key, holder, mutate)
}

// UpdateStatusFrom is UpdateStatus starting from base, when not nil, instead
// of a read: the copy the writer last wrote or was handed by its watch,
// likely still the latest. Nothing is weakened: the ownership check applies
// to base, and the write carries base's resourceVersion, so a base that is
// no longer the latest fails with a conflict and the write starts over with
// a fresh read. What it saves is the read, one request of two, when base is
// the latest.
func UpdateStatusFrom(ctx context.Context, base *tetherv1alpha1.Conversation, reader client.Reader, writer client.StatusWriter, key types.NamespacedName,
	holder Holder, mutate func(*tetherv1alpha1.Conversation) error,
) (*tetherv1alpha1.Conversation, error) {
	var conv tetherv1alpha1.Conversation
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if base != nil {
			base.DeepCopyInto(&conv)
			base = nil
		} else if err := reader.Get(ctx, key, &conv); err != nil {
			return err
		}
		if err := Check(&conv, holder); err != nil {
			return err
		}
		if err := mutate(&conv); err != nil {
			return err
		}
		if conv.Status.Lease == nil || conv.Status.Lease.Epoch != holder.Epoch || conv.Status.Lease.Holder != holder.Pod {
			return errors.New("fencing: mutate must not change the lease")
		}
		return writer.Update(ctx, &conv)
	})
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, fmt.Errorf("fencing: %s still conflicting after retries: %w", key, err)
		}
		return nil, err
	}
	return &conv, nil
}

package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// The cache index on Conversations by owner pod, named like the selectable
// field it mirrors. Lookups are per namespace. (Conversations by Agent are
// the slot tracker's: only the counts and the waiting ones are needed.)
const ownerIndex = tetherv1alpha1.OwnerField

func setupIndexes(ctx context.Context, mgr manager.Manager) error {
	return mgr.GetFieldIndexer().IndexField(ctx, &tetherv1alpha1.Conversation{}, ownerIndex, func(obj client.Object) []string {
		conv := obj.(*tetherv1alpha1.Conversation)
		if conv.Status.Owner == nil {
			return nil
		}
		return []string{conv.Status.Owner.Name}
	})
}

package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// Cache indexes on Conversations, named like the selectable fields they
// mirror. Lookups are per namespace.
const (
	ownerIndex = tetherv1alpha1.OwnerField
	agentIndex = tetherv1alpha1.AgentField
)

func setupIndexes(ctx context.Context, mgr manager.Manager) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &tetherv1alpha1.Conversation{}, ownerIndex, func(obj client.Object) []string {
		conv := obj.(*tetherv1alpha1.Conversation)
		if conv.Status.Owner == nil {
			return nil
		}
		return []string{conv.Status.Owner.Name}
	}); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &tetherv1alpha1.Conversation{}, agentIndex, func(obj client.Object) []string {
		return []string{obj.(*tetherv1alpha1.Conversation).Spec.AgentRef.Name}
	})
}

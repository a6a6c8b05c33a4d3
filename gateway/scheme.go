package gateway

import (
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// newScheme holds the only types the gateway reads: Tether's.
func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := tetherv1alpha1.AddToScheme(s); err != nil {
		panic(err) // the types are ours: this cannot fail
	}
	return s
}

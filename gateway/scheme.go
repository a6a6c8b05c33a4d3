package gateway

import (
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

// newScheme holds the only types the gateway reads: Tether's, and the core
// group's for worker pods.
func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := tetherv1alpha1.AddToScheme(s); err != nil {
		panic(err) // the types are ours: this cannot fail
	}
	if err := corev1.AddToScheme(s); err != nil {
		panic(err) // generated types: this cannot fail
	}
	return s
}

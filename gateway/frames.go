package gateway

import (
	"encoding/json"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/protocol"
)

func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := tetherv1alpha1.AddToScheme(s); err != nil {
		panic(err) // the types are ours: this cannot fail
	}
	return s
}

func marshalFrame(f protocol.ServerFrame) ([]byte, error) { return json.Marshal(f) }

package fencing

import (
	"errors"
	"testing"

	tetherv1alpha1 "tether.dev/tether/api/v1alpha1"
)

func TestCheck(t *testing.T) {
	owned := func(pod string, epoch int64) *tetherv1alpha1.Conversation {
		c := &tetherv1alpha1.Conversation{}
		c.Status.Lease = &tetherv1alpha1.ConversationLease{Holder: pod, Epoch: epoch}
		if pod != "" {
			c.Status.Owner = &tetherv1alpha1.OwnerPod{Name: pod}
		}
		return c
	}
	cases := []struct {
		name   string
		conv   *tetherv1alpha1.Conversation
		holder Holder
		fenced bool
	}{
		{"current owner", owned("a", 3), Holder{Pod: "a", Epoch: 3}, false},
		{"stale epoch", owned("a", 4), Holder{Pod: "a", Epoch: 3}, true},
		{"epoch from the future", owned("a", 3), Holder{Pod: "a", Epoch: 4}, true},
		{"another pod at the current epoch", owned("b", 3), Holder{Pod: "a", Epoch: 3}, true},
		{"revoked: no owner", owned("", 4), Holder{Pod: "a", Epoch: 4}, true},
		{"never assigned", &tetherv1alpha1.Conversation{}, Holder{Pod: "a", Epoch: 0}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.conv, tc.holder)
			if fenced := errors.Is(err, ErrFenced); fenced != tc.fenced {
				t.Errorf("Check = %v; want fenced %v", err, tc.fenced)
			}
		})
	}
}

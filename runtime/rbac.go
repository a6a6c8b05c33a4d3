package runtime

// What a runtime does with the API, and nothing more: it reads its Agent and
// the Conversations assigned to its pod and writes their status under its
// epoch, keeps its pod's Lease, and keeps the kubernetes store's log objects.
// It reads no Secrets: the manager mounts the keys its Agent's store names
// into its container. It also creates
// TokenReviews to check the gateway's token: they are cluster-scoped, so the
// chart grants that alone in a ClusterRole of its own.
//
// +kubebuilder:rbac:groups=tether.dev,resources=agents,verbs=get
// +kubebuilder:rbac:groups=tether.dev,resources=conversations,verbs=get;list;watch
// +kubebuilder:rbac:groups=tether.dev,resources=conversations/status,verbs=get;update
// +kubebuilder:rbac:groups=tether.dev,resources=conversationlogs,verbs=get;list;create;update;patch;delete;deletecollection
// Chunks are created and deleted, never updated: an owner that lost the
// conversation cannot change a chunk the current owner wrote.
// +kubebuilder:rbac:groups=tether.dev,resources=conversationlogchunks,verbs=get;list;create;delete;deletecollection
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;delete

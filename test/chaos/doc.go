// Package chaos is Tether's chaos suite (make chaos): on the two-node local
// cluster it runs Agents of every kind on both stores, one independent
// client per conversation through the Ingress, and injects faults at random
// (pods deleted, killed and frozen, a node partitioned or frozen, the
// gateway, the manager's leader, the Ingress, the API server and Redis
// restarted, clients' TCP connections cut mid-frame). Then it audits every
// conversation from the clients' transcripts, the durable logs read back,
// the stores' own histories and the API server's audit log, and reports how
// long each kind of fault took to heal. Outside the cluster's network
// namespace its tests skip.
package chaos

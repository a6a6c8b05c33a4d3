// Package tlsfiles serves TLS material from files that change under a
// running process (a Secret volume the kubelet updates): a serving key pair
// and a CA bundle, each read again when its files change, checked at most
// every few seconds, and the last good one kept when a change is broken.
package tlsfiles

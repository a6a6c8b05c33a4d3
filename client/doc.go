// Package client is the Go client of a Tether conversation. It connects
// through the gateway with a token, reconnects with jittered backoff when the
// socket drops, resumes after the last event it saw (so events arrive once,
// in order), keeps a bounded queue of messages until each is acknowledged
// (re-sending them after a reconnect: the owner applies a client id at most
// once), and keeps the pending prompt for its caller.
//
//	c := client.Connect(ctx, client.Config{URL: "wss://chat.example.com/v1/conversations/team-a/refund-1234", Token: client.StaticToken(tok)})
//	defer c.Close()
//	for f := range c.Frames() { ... }
package client

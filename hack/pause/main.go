// Command pause is the sandbox ("pause") image of the local cluster: it holds
// a pod's namespaces and does nothing else until it is told to stop. No
// registry is reachable here, so the cluster cannot pull the usual one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

// Command images builds Tether's container images FROM scratch with
// go-containerregistry: one static binary per image, run as a non-root user,
// written as image tarballs that `ctr images import` (or `docker load`)
// takes. No Docker engine and no registry are needed.
//
//	go run ./hack/images --tag 0.1.0 --out _output/images manager gateway runtime pause
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	tag := flag.String("tag", "dev", "Tag of every image.")
	out := flag.String("out", "_output/images", "Directory for the image tarballs.")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		names = Names()
	}
	if err := os.MkdirAll(*out, 0o750); err != nil {
		fail(err)
	}
	for _, name := range names {
		start := time.Now()
		path := filepath.Join(*out, name+".tar")
		ref, err := Build(name, *tag, path)
		if err != nil {
			fail(err)
		}
		fmt.Printf("  %-8s %s -> %s (%s)\n", name, ref, path, time.Since(start).Round(100*time.Millisecond))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

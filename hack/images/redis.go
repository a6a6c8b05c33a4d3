package main

import (
	"github.com/google/go-containerregistry/pkg/name"
)

// redisImage is Redis for the chaos suite's redis store (make chaos), made
// of this machine's own Debian redis-server: the binary, the shared
// libraries ldd names and the loader. It keeps its data in /data, which the
// pod mounts.
const (
	redisImage  = "redis"
	redisBinary = "/usr/bin/redis-check-rdb" // redis-server is a link to it
)

// buildRedis writes the Redis image with tag to path.
func buildRedis(tag, path string) (string, error) {
	ref, err := name.NewTag("tether-" + redisImage + ":" + tag)
	if err != nil {
		return "", err
	}
	files := []imageFile{{host: redisBinary, path: redisBinary}}
	libs, err := sharedLibraries(redisBinary)
	if err != nil {
		return "", err
	}
	for _, lib := range libs {
		files = append(files, imageFile{host: lib, path: lib})
	}
	layer, err := filesLayer(files, map[string]string{"/usr/bin/redis-server": "redis-check-rdb"})
	if err != nil {
		return "", err
	}
	return writeImage(ref, layer, []string{"/usr/bin/redis-server"}, []string{"PATH=/usr/bin"}, path)
}

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// image is one of Tether's images: the package of its binary and its
// entrypoint's arguments.
type image struct {
	pkg  string
	args []string
}

var images = map[string]image{
	"manager": {pkg: "./cmd/manager"},
	"gateway": {pkg: "./cmd/gateway"},
	// The runtime image carries the example agents as in-process handlers
	// (--agent=echo or --agent=approval).
	"runtime": {pkg: "./cmd/runtime"},
	"pause":   {pkg: "./hack/pause"},
}

// Names are the images there are, sorted.
func Names() []string {
	names := []string{pythonImage, redisImage}
	for n := range images {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// nonRoot is the user every image runs as (the restricted Pod Security
// profile refuses root).
const nonRoot = "65532:65532"

// Build builds image name with tag and writes it to path as a tarball; it
// returns the image's reference.
func Build(imageName, tag, path string) (string, error) {
	switch imageName {
	case pythonImage:
		return buildPython(tag, path)
	case redisImage:
		return buildRedis(tag, path)
	}
	spec, ok := images[imageName]
	if !ok {
		return "", fmt.Errorf("no image %q: want one of %v", imageName, Names())
	}
	ref, err := name.NewTag("tether-" + imageName + ":" + tag)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "tether-image-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary := filepath.Join(dir, imageName)
	if err := buildStatic(spec.pkg, binary); err != nil {
		return "", err
	}
	layer, err := binaryLayer(binary, "/"+imageName)
	if err != nil {
		return "", err
	}
	return writeImage(ref, layer, append([]string{"/" + imageName}, spec.args...), nil, path)
}

// writeImage writes an image of one layer, run by the non-root user with
// entrypoint and env, as a tarball at path; it returns its reference.
func writeImage(ref name.Tag, layer v1.Layer, entrypoint, env []string, path string) (string, error) {
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.Env = env
	cfg.Config.User = nonRoot
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   strings.TrimPrefix(ref.RepositoryStr(), "library/"),
		"org.opencontainers.image.version": ref.TagStr(),
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return "", err
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return ref.String(), nil
}

// buildStatic builds a static Linux binary of pkg (no cgo, no libc).
func buildStatic(pkg, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg) //nolint:gosec // our own packages
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, msg)
	}
	return nil
}

// binaryLayer is a layer holding one executable at path, owned by root and
// not writable by the user the image runs as.
func binaryLayer(binary, path string) (v1.Layer, error) {
	data, err := os.ReadFile(binary) //nolint:gosec // our own build output
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path[1:], Mode: 0o555, Size: int64(len(data)), Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	content := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil })
}

func moduleRoot() (string, error) {
	out, err := exec.CommandContext(context.Background(), "go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := string(bytes.TrimSpace(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the tether module")
	}
	return filepath.Dir(gomod), nil
}

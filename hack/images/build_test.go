package main

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuildPause builds the smallest image and reads it back as a
// container runtime would: one layer holding one static, non-writable
// executable, run as a non-root user.
func TestBuildPause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pause.tar")
	ref, err := Build("pause", "test", path)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("reading %s back: %v", path, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Config.User != nonRoot || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" {
		t.Fatalf("config: os %q user %q entrypoint %v", cfg.OS, cfg.Config.User, cfg.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "pause" || hdr.Mode != 0o555 {
		t.Fatalf("layer entry %q mode %o", hdr.Name, hdr.Mode)
	}
	bin := filepath.Join(t.TempDir(), "pause")
	f, err := os.Create(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, tr); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("more than one file in the layer: %v", err)
	}
	exe, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exe.Close() }()
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary has an interpreter: it is not static, and a scratch image has no libc")
		}
	}
}

func TestUnknownImage(t *testing.T) {
	if _, err := Build("nginx", "test", filepath.Join(t.TempDir(), "x.tar")); err == nil {
		t.Fatal("an unknown image was built")
	}
}

// TestBuildPythonAgent builds the Python example agent's image from this
// machine's python3 and reads it back: the interpreter, its loader and
// libraries, the standard library's json, and the SDK with its example,
// run by a non-root user; nothing of Tether's Go code.
func TestBuildPythonAgent(t *testing.T) {
	cfg, have := buildAndRead(t, pythonImage)
	if cfg.Config.User != nonRoot || cfg.Config.Entrypoint[0] != "/usr/bin/python3" {
		t.Fatalf("config: user %q entrypoint %v", cfg.Config.User, cfg.Config.Entrypoint)
	}
	want := []string{"/usr/bin/python3", pythonBinary, pythonLib + "/json/__init__.py", pythonLib + "/os.py",
		"/sdk/tether_agent.py", "/sdk/examples/refund_agent.py"}
	libs, err := sharedLibraries(pythonBinary)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append(want, libs...) {
		if !have[w] {
			t.Errorf("the image lacks %s", w)
		}
	}
	if have[pythonLib+"/test/__init__.py"] {
		t.Error("the image carries the standard library's tests")
	}
}

// TestBuildRedis builds the chaos suite's Redis image from this machine's
// redis-server: the binary, its libraries and loader, run by a non-root
// user.
func TestBuildRedis(t *testing.T) {
	cfg, have := buildAndRead(t, redisImage)
	if cfg.Config.User != nonRoot || cfg.Config.Entrypoint[0] != "/usr/bin/redis-server" {
		t.Fatalf("config: user %q entrypoint %v", cfg.Config.User, cfg.Config.Entrypoint)
	}
	libs, err := sharedLibraries(redisBinary)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append([]string{"/usr/bin/redis-server", redisBinary}, libs...) {
		if !have[w] {
			t.Errorf("the image lacks %s", w)
		}
	}
}

// buildAndRead builds an image and reads it back: its config and the paths
// its one layer holds (every regular file not writable).
func buildAndRead(t *testing.T, image string) (*v1.ConfigFile, map[string]bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), image+".tar")
	ref, err := Build(image, "test", path)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	have := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Mode&0o222 != 0 {
			t.Fatalf("%s is writable (mode %o)", hdr.Name, hdr.Mode)
		}
		have["/"+hdr.Name] = true
	}
	return cfg, have
}

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

package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The Python example agent's image. No base image can be pulled here, so
// it is made of this machine's own Debian python3: the interpreter, the
// shared libraries ldd names and their loader, the standard library (less
// its tests and GUI parts), and sdk/python. It holds nothing of Tether but
// the SDK: the manager injects the runtime (Agent spec.agentContainer).
// With a registry, sdk/python/Dockerfile builds the same from python:3.11-slim.
const (
	pythonBinary = "/usr/bin/python3.11"
	pythonLib    = "/usr/lib/python3.11"
	pythonImage  = "python-agent"
)

// stdlibSkipped are parts of the standard library an agent does not need.
var stdlibSkipped = []string{"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "__pycache__", "distutils", "config-3.11-x86_64-linux-gnu"}

// buildPython writes the Python agent image with tag to path.
func buildPython(tag, path string) (string, error) {
	ref, err := name.NewTag("tether-" + pythonImage + ":" + tag)
	if err != nil {
		return "", err
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	var files []imageFile
	add := func(host, in string) { files = append(files, imageFile{host: host, path: in}) }
	add(pythonBinary, pythonBinary)
	libs, err := sharedLibraries(pythonBinary)
	if err != nil {
		return "", err
	}
	// The extension modules an agent's HTTPS calls need load libssl and
	// libcrypto, which the interpreter itself does not.
	var modules []string
	for _, module := range []string{"_ssl", "_hashlib"} {
		found, err := filepath.Glob(filepath.Join(pythonLib, "lib-dynload", module+".cpython-*.so"))
		if err != nil {
			return "", err
		}
		modules = append(modules, found...)
	}
	for _, m := range modules {
		more, err := sharedLibraries(m)
		if err != nil {
			return "", err
		}
		libs = append(libs, more...)
	}
	for _, lib := range libs {
		add(lib, lib)
	}
	if err := filepath.WalkDir(pythonLib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && slices.Contains(stdlibSkipped, d.Name()) {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			add(p, p)
		}
		return nil
	}); err != nil {
		return "", err
	}
	sdk := filepath.Join(root, "sdk", "python")
	if err := filepath.WalkDir(sdk, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(p, ".py") {
			return err
		}
		rel, _ := filepath.Rel(sdk, p)
		add(p, "/sdk/"+rel)
		return nil
	}); err != nil {
		return "", err
	}
	layer, err := filesLayer(files, map[string]string{"/usr/bin/python3": "python3.11"})
	if err != nil {
		return "", err
	}
	return writeImage(ref, layer, []string{"/usr/bin/python3", "/sdk/examples/refund_agent.py"},
		[]string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PATH=/usr/bin"}, path)
}

// sharedLibraries lists what ldd says binary loads, the loader included.
func sharedLibraries(binary string) ([]string, error) {
	out, err := exec.CommandContext(context.Background(), "ldd", binary).Output() //nolint:gosec // a binary of this machine the build names
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}

// imageFile is a host file placed at path in the image.
type imageFile struct{ host, path string }

// filesLayer is a layer of files (symlinks on the host are followed: the
// image holds their contents) and symlinks, owned by root, not writable.
func filesLayer(files []imageFile, symlinks map[string]string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parents []string
		for d := filepath.Dir(p); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Name: d[1:] + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
				return err
			}
		}
		return nil
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f.path] {
			continue
		}
		seen[f.path] = true
		data, err := os.ReadFile(f.host)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(f.host)
		if err != nil {
			return nil, err
		}
		mode := int64(0o444)
		if info.Mode()&0o111 != 0 {
			mode = 0o555
		}
		if err := mkdirs(f.path); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.path[1:], Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	for link, target := range symlinks {
		if err := mkdirs(link); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: link[1:], Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	content := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil })
}

package docs

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"tether.dev/tether/internal/testing/testenv"
)

var update = flag.Bool("update", false, "write the generated flag tables into docs/operations.md")

// binaryFlag is one flag as a binary's -help prints it.
type binaryFlag struct {
	name, kind, usage, def string
}

var defaultRE = regexp.MustCompile(`\s*\(default (.*)\)$`)

// helpFlags builds cmd/name and parses what its -help prints (the flag
// package's format: "  -name type" then indented usage lines).
func helpFlags(t *testing.T, root, name string) []binaryFlag {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "./cmd/"+name) //nolint:gosec,noctx // the module's own commands
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/%s: %v\n%s", name, err, out)
	}
	out, _ := exec.Command(bin, "-help").CombinedOutput() //nolint:gosec,noctx // just built
	var flags []binaryFlag
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			fields := strings.SplitN(strings.TrimPrefix(line, "  -"), " ", 2)
			f := binaryFlag{name: fields[0]}
			if len(fields) == 2 {
				// A short usage may follow on the same line after a tab.
				kind, usage, _ := strings.Cut(strings.TrimSpace(fields[1]), "\t")
				f.kind, f.usage = strings.TrimSpace(kind), strings.TrimSpace(usage)
			}
			flags = append(flags, f)
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			f := &flags[len(flags)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(line))
		}
	}
	for i := range flags {
		if m := defaultRE.FindStringSubmatch(flags[i].usage); m != nil {
			flags[i].def = m[1]
			flags[i].usage = defaultRE.ReplaceAllString(flags[i].usage, "")
		}
	}
	if len(flags) == 0 {
		t.Fatalf("cmd/%s -help printed no flags:\n%s", name, out)
	}
	return flags
}

func table(flags []binaryFlag) string {
	var b strings.Builder
	b.WriteString("| flag | default | what it is for |\n|---|---|---|\n")
	for _, f := range flags {
		name := "`--" + f.name
		if f.kind != "" {
			name += " " + f.kind
		}
		name += "`"
		def := ""
		if f.def != "" {
			def = "`" + strings.Trim(f.def, `"`) + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, def, strings.ReplaceAll(f.usage, "|", `\|`))
	}
	return b.String()
}

// TestFlagTablesMatchTheBinaries: each block between
// <!-- flags:NAME --> and <!-- end flags:NAME --> in docs/operations.md is
// the table of cmd/NAME's flags as its -help prints them.
func TestFlagTablesMatchTheBinaries(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "operations.md")
	data, err := os.ReadFile(path) //nolint:gosec // the repository's own file
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, name := range []string{"manager", "runtime", "gateway"} {
		begin, end := "<!-- flags:"+name+" -->\n", "<!-- end flags:"+name+" -->"
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i < 0 || j < i {
			t.Fatalf("docs/operations.md has no %q … %q block", strings.TrimSpace(begin), end)
		}
		want := table(helpFlags(t, root, name))
		if got := doc[i+len(begin) : j]; got != want {
			if !*update {
				t.Errorf("the flag table of cmd/%s in docs/operations.md is not what -help prints; run go test ./test/docs -update\n--- doc\n%s--- binary\n%s", name, got, want)
			}
			doc = doc[:i+len(begin)] + want + doc[j:]
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil { //nolint:gosec // a document
			t.Fatal(err)
		}
	}
}

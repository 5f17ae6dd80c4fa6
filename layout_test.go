// Tests of the module's layout, not of any one package: which package may
// import which, and the README's package table. They read the source tree
// (go/parser, imports only) and README.md; no go command, no engine.
package deployctl_test

import (
	"bufio"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/deployctl/deployctl"

// pkgImports is what one package's files import, by kind of file. Paths
// are the module's own packages only, relative to the module root ("specs",
// "controller/policy").
type pkgImports struct {
	build []string // non-test files: what the package itself depends on
	test  []string // _test.go files, in-package and external
}

// importGraph maps each package directory of the module (relative, "/"
// separated, "." for the root) to its imports of other module packages.
type importGraph map[string]pkgImports

// readModule walks the module the way `go list ./...` does: every
// directory holding .go files is a package, except testdata, directories
// starting with "." or "_", and nested modules. A file whose build
// constraint is exactly `ignore` (a generator) is not part of its package.
// Files for other systems are counted: a rule must hold on every GOOS.
func readModule(root string) (importGraph, error) {
	g := importGraph{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		for _, cg := range f.Comments {
			if cg.Pos() >= f.Package {
				break
			}
			for _, c := range cg.List {
				if strings.TrimSpace(c.Text) == "//go:build ignore" {
					return nil
				}
			}
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		imp := g[dir]
		for _, spec := range f.Imports {
			p, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: import %s: %w", path, spec.Path.Value, err)
			}
			var own string
			switch {
			case p == module:
				own = "."
			case strings.HasPrefix(p, module+"/"):
				own = strings.TrimPrefix(p, module+"/")
			default:
				continue
			}
			if strings.HasSuffix(path, "_test.go") {
				imp.test = append(imp.test, own)
			} else {
				imp.build = append(imp.build, own)
			}
		}
		g[dir] = imp
		return nil
	})
	return g, err
}

// under reports whether pkg is prefix or a package below it; every
// package is under ".".
func under(pkg, prefix string) bool {
	return prefix == "." || pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// importRule: the packages under From (with their tests when Tests is
// set) must not depend on any package under Never, directly or through
// other packages.
type importRule struct {
	From  []string
	Never []string
	Tests bool
	Why   string
}

// violations returns, for each package the rule covers that depends on a
// forbidden one, the chain of imports that gets there ("controller ->
// internal/x -> deployer"). Dependencies are followed through non-test
// files, as the compiler does; a package's own test files count only as
// the first step.
func violations(g importGraph, r importRule) []string {
	covered := func(pkg string) bool {
		return slices.ContainsFunc(r.From, func(p string) bool { return under(pkg, p) })
	}
	forbidden := func(pkg string) bool {
		return slices.ContainsFunc(r.Never, func(p string) bool { return under(pkg, p) })
	}
	var out []string
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, start := range pkgs {
		if !covered(start) {
			continue
		}
		first := slices.Clone(g[start].build)
		if r.Tests {
			first = append(first, g[start].test...)
		}
		// Breadth first, remembering how each package was reached.
		from := map[string]string{start: ""}
		queue := []string{}
		for _, p := range first {
			if _, seen := from[p]; !seen {
				from[p] = start
				queue = append(queue, p)
			}
		}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			if forbidden(p) && p != start {
				chain := []string{p}
				for q := from[p]; q != ""; q = from[q] {
					chain = append(chain, q)
				}
				slices.Reverse(chain)
				out = append(out, strings.Join(chain, " -> "))
				continue
			}
			for _, next := range g[p].build {
				if _, seen := from[next]; !seen {
					from[next] = p
					queue = append(queue, next)
				}
			}
		}
	}
	return out
}

// The import direction of the module. The controller, the store and the
// spec format never reach into the agent; rules both sides use live under
// internal/ and reach into neither side; specs is pure.
var importRules = []importRule{
	{
		From:  []string{"controller", "raftstore", "specs"},
		Never: []string{"deployer"},
		Tests: true,
		Why:   "the controller side never imports the agent; rules both use belong under internal/",
	},
	{
		From:  []string{"specs"},
		Never: []string{"."},
		Tests: true,
		Why:   "specs is the pure spec format and imports nothing of the project",
	},
	{
		From:  []string{"internal/audit", "internal/seccompprofile", "internal/seccomprules"},
		Never: []string{"deployer", "controller", "raftstore", "cmd"},
		Why:   "shared rules are imported by both sides and import neither",
	},
	{
		From:  []string{"internal/wire"},
		Never: []string{"deployer", "cmd"},
		Why:   "the wire is what the CLI and the agents share with the server: records and rules, never the agent",
	},
	{
		From:  []string{"deployer", "controller", "raftstore", "specs", "internal/wire", "internal/pki"},
		Never: []string{"internal/hollow"},
		Tests: true,
		Why:   "hollow hosts are for scale tests only: the real agent, the servers and their tests never use them",
	},
	{
		From:  []string{"internal/hollow"},
		Never: []string{"deployer", "cmd"},
		Why:   "hollow hosts speak to the servers only through the client a real agent uses, and share no agent code",
	},
}

func TestImportDirection(t *testing.T) {
	g, err := readModule(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"controller", "raftstore", "specs", "deployer", "internal/audit", "internal/seccompprofile", "internal/wire", "internal/hollow"} {
		if _, ok := g[pkg]; !ok {
			t.Fatalf("package %s not found: the walk is broken or the rules name a package that moved", pkg)
		}
	}
	for _, r := range importRules {
		for _, v := range violations(g, r) {
			t.Errorf("%s: %s", v, r.Why)
		}
	}
}

// TestViolationsFindsIndirectImports proves the checker can fail: an
// import through another package, or from a test file, is found, with its
// chain; an import from a test file of a package on the way is not
// (the compiler does not follow it).
func TestViolationsFindsIndirectImports(t *testing.T) {
	g := importGraph{
		"controller":        {build: []string{"internal/x"}},
		"controller/policy": {test: []string{"deployer/audit"}},
		"internal/x":        {build: []string{"internal/y"}, test: []string{"deployer"}},
		"internal/y":        {build: []string{"deployer/audit"}},
		"deployer":          {build: []string{"internal/y"}},
		"deployer/audit":    {},
		"specs":             {test: []string{"internal/z"}},
		"internal/z":        {},
		"raftstore":         {build: []string{"specs"}},
	}
	got := violations(g, importRule{From: []string{"controller", "raftstore", "specs"}, Never: []string{"deployer"}, Tests: true})
	want := []string{
		"controller -> internal/x -> internal/y -> deployer/audit",
		"controller/policy -> deployer/audit",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations = %q, want %q", got, want)
	}
	if got := violations(g, importRule{From: []string{"controller"}, Never: []string{"deployer"}}); len(got) != 1 {
		t.Errorf("without tests: violations = %q, want only the build chain", got)
	}
	if got := violations(g, importRule{From: []string{"specs"}, Never: []string{"."}, Tests: true}); !slices.Equal(got, []string{"specs -> internal/z"}) {
		t.Errorf("specs importing the project: violations = %q", got)
	}
	if got := violations(g, importRule{From: []string{"raftstore"}, Never: []string{"deployer"}, Tests: true}); len(got) != 0 {
		t.Errorf("a clean package: violations = %q", got)
	}
}

// readmeTableRow is a row of the README's package table: "| `path/` | what |".
var readmeTableRow = regexp.MustCompile("^\\| *`([^`]*)` *\\|(.*)\\|\\s*$")

// readmePackages reads the package table under the README's "## How it
// works" heading: each row's first cell is one package directory in
// backquotes, with a trailing slash ("controller/policy/", "./" for the
// module root). It returns the directories without the slash.
func readmePackages(readme string) ([]string, error) {
	var pkgs []string
	in, table := false, false
	sc := bufio.NewScanner(strings.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			in = line == "## How it works"
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if table {
				break // the table ended
			}
			continue
		}
		table = true
		if strings.HasPrefix(line, "| package") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| ---") {
			continue
		}
		m := readmeTableRow.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("README.md:%d: a package row is | `dir/` | what it is |, got %q", n, line)
		}
		dir := m[1]
		if !strings.HasSuffix(dir, "/") || strings.TrimSpace(m[2]) == "" {
			return nil, fmt.Errorf("README.md:%d: %q: name one package directory with a trailing slash and say what it is", n, dir)
		}
		dir = strings.TrimSuffix(dir, "/")
		if dir == "." || dir == "" {
			dir = "."
		}
		pkgs = append(pkgs, dir)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("README.md: no package table under \"## How it works\"")
	}
	return pkgs, nil
}

// tableDiff compares the table's packages with the module's.
func tableDiff(table []string, g importGraph) (missing, unknown, twice []string) {
	seen := map[string]bool{}
	for _, p := range table {
		if seen[p] {
			twice = append(twice, p)
		}
		seen[p] = true
		if _, ok := g[p]; !ok {
			unknown = append(unknown, p)
		}
	}
	for p := range g {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	return missing, unknown, twice
}

func TestReadmeNamesEveryPackage(t *testing.T) {
	g, err := readModule(".")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	table, err := readmePackages(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	missing, unknown, twice := tableDiff(table, g)
	for _, p := range missing {
		t.Errorf("README.md: the package table (\"## How it works\") does not name package %s/: add a row | `%s/` | what it is |", p, p)
	}
	for _, p := range unknown {
		t.Errorf("README.md: the package table names %s/, which is not a package of the module: remove or rename the row", p)
	}
	for _, p := range twice {
		t.Errorf("README.md: the package table names %s/ twice", p)
	}
}

// TestTableDiffCanFail proves the README check can fail both ways.
func TestTableDiffCanFail(t *testing.T) {
	readme := "# x\n\n## How it works\n\nintro\n\n| package | what it is |\n|---|---|\n| `specs/` | the format |\n| `gone/` | moved away |\n| `specs/` | again |\n\nEach package...\n| `after/` | not in the table |\n\n## Next\n| `later/` | x |\n"
	table, err := readmePackages(readme)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"specs", "gone", "specs"}; !slices.Equal(table, want) {
		t.Fatalf("table = %q, want %q", table, want)
	}
	missing, unknown, twice := tableDiff(table, importGraph{"specs": {}, "controller": {}, "controller/rollout": {}})
	if !slices.Equal(missing, []string{"controller", "controller/rollout"}) || !slices.Equal(unknown, []string{"gone"}) || !slices.Equal(twice, []string{"specs"}) {
		t.Errorf("missing %q, unknown %q, twice %q", missing, unknown, twice)
	}
	for _, bad := range []string{
		"## How it works\n| package | what |\n|---|---|\n| `specs` | no slash |\n",
		"## How it works\n| package | what |\n|---|---|\n| `specs/` |  |\n",
		"## How it works\n| package | what |\n|---|---|\n| specs/ and controller/ | two, unquoted |\n",
		"## How it works\n\nno table\n",
	} {
		if _, err := readmePackages(bad); err == nil {
			t.Errorf("readmePackages(%q): no error", bad)
		}
	}
}

// Command ciproxy builds a file-based Go module proxy (GOPROXY=file:///DIR)
// from a repository's own git history, so that CI can check that every
// nested module installs the way a user's `go get` would install it, before
// anything is published.
//
// Usage:
//
//	ciproxy build -repo DIR -out DIR [-root-rev REV]
//	                                    write the proxy; print the plan (below)
//	ciproxy pseudo -repo DIR [REV]      print the root module's version for REV (default HEAD)
//	ciproxy latest-tag -repo DIR [DIR]  print the newest release tag of the module in DIR
//	ciproxy work -repo DIR [-write]     check HEAD's go.work (see work.go), or fix the work tree's
//
// The modules are the directories holding a go.mod in the HEAD commit, except
// those under examples/ and .ci/ and those with an element starting with "."
// or "_" or named testdata. The proxy serves:
//
//   - the root module at the version each nested module's go.mod requires
//     (at HEAD and at the newest tag of that nested module), zipped from the
//     commit that version names; a version naming no commit of the repository
//     is not served and is reported, so the later `go get` fails as a user's
//     would;
//   - the root module and each nested module at HEAD, under the version the
//     go command would give HEAD (its tag, or a pseudo-version), and the root
//     at -root-rev when given.
//
// Zips are made with golang.org/x/mod/zip.CreateFromVCS, which applies the
// go command's own rules (nested modules left out, the root LICENSE copied
// into nested modules), so their go.sum hashes are those a public proxy
// would serve for the same commit.
//
// The plan, one tab-separated line per module, is
//
//	DIR  MODULE-PATH  HEAD-VERSION  ROOT-VERSION-REQUIRED  REPLACED
//
// with "." as the root's directory, "-" where nothing is required, and
// REPLACED "replaced" when the module's go.mod replaces the root module
// (which users' builds ignore), else "-".
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	repo := fs.String("repo", ".", "git work tree of the repository")
	out := fs.String("out", "", "directory to write the proxy to (build)")
	rootRev := fs.String("root-rev", "", "also serve the root module at this commit (build)")
	write := fs.Bool("write", false, "fix the work tree's go.work instead of checking HEAD's (work)")
	if err := fs.Parse(args); err != nil {
		usage()
	}
	abs, err := filepath.Abs(*repo)
	if err != nil {
		fatal(err)
	}
	r := &repository{dir: abs}
	switch cmd {
	case "build":
		if *out == "" {
			usage()
		}
		err = build(r, *out, *rootRev, os.Stdout)
	case "pseudo":
		rev := "HEAD"
		if fs.NArg() > 0 {
			rev = fs.Arg(0)
		}
		var m *mod
		if m, err = r.module("HEAD", "."); err == nil {
			var v string
			if v, err = r.versionAt(m, rev); err == nil {
				fmt.Println(v)
			}
		}
	case "work":
		if *write {
			err = workWrite(r)
		} else {
			err = workCheck(r)
		}
	case "latest-tag":
		dir := "."
		if fs.NArg() > 0 {
			dir = path.Clean(fs.Arg(0))
		}
		var m *mod
		if m, err = r.module("HEAD", dir); err == nil {
			var tag string
			if tag, err = r.latestTag(m, ""); err == nil && tag != "" {
				fmt.Println(m.tagPrefix + tag)
			}
		}
	default:
		usage()
	}
	if err != nil {
		fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ciproxy build -repo DIR -out DIR [-root-rev REV] | pseudo -repo DIR [REV] | latest-tag -repo DIR [MODDIR] | work -repo DIR [-write]")
	os.Exit(2)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ciproxy:", err)
	os.Exit(1)
}

// mod is one module of the repository.
type mod struct {
	dir       string // "." for the root
	path      string // module path
	tagPrefix string // "" for the root, "dir/" for a nested module
}

func (m *mod) subdir() string {
	if m.dir == "." {
		return ""
	}
	return m.dir
}

type repository struct{ dir string }

func (r *repository) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(b), nil
}

// module reads the go.mod in dir at rev.
func (r *repository) module(rev, dir string) (*mod, error) {
	name := "go.mod"
	if dir != "." {
		name = dir + "/go.mod"
	}
	data, err := r.git("show", rev+":"+name)
	if err != nil {
		return nil, err
	}
	p := modfile.ModulePath([]byte(data))
	if p == "" {
		return nil, fmt.Errorf("%s at %s: no module line", name, rev)
	}
	m := &mod{dir: dir, path: p}
	if dir != "." {
		m.tagPrefix = dir + "/"
	}
	return m, nil
}

// modules lists the root module and the nested modules at rev, root first.
func (r *repository) modules(rev string) ([]*mod, error) {
	out, err := r.git("ls-tree", "-r", "--name-only", rev)
	if err != nil {
		return nil, err
	}
	var mods []*mod
	for _, f := range strings.Split(strings.TrimSpace(out), "\n") {
		if path.Base(f) != "go.mod" {
			continue
		}
		dir := path.Dir(f)
		if skipDir(dir) {
			continue
		}
		m, err := r.module(rev, dir)
		if err != nil {
			return nil, err
		}
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool {
		if (mods[i].dir == ".") != (mods[j].dir == ".") {
			return mods[i].dir == "."
		}
		return mods[i].dir < mods[j].dir
	})
	if len(mods) == 0 || mods[0].dir != "." {
		return nil, errors.New("no go.mod at the repository root")
	}
	for _, m := range mods[1:] {
		if want := mods[0].path + "/" + m.dir; m.path != want {
			return nil, fmt.Errorf("%s/go.mod declares %s; the go command looks for %s there", m.dir, m.path, want)
		}
	}
	return mods, nil
}

func skipDir(dir string) bool {
	if dir == "." {
		return false
	}
	elems := strings.Split(dir, "/")
	if elems[0] == "examples" || elems[0] == ".ci" {
		return true
	}
	for _, e := range elems {
		if e == "testdata" || strings.HasPrefix(e, ".") || strings.HasPrefix(e, "_") {
			return true
		}
	}
	return false
}

// commit resolves rev to a full commit hash and its commit time.
func (r *repository) commit(rev string) (string, time.Time, error) {
	out, err := r.git("log", "-1", "--format=%H %ct", rev+"^{commit}", "--")
	if err != nil {
		return "", time.Time{}, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return "", time.Time{}, fmt.Errorf("git log %s: unexpected output %q", rev, out)
	}
	sec, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", time.Time{}, err
	}
	return f[0], time.Unix(sec, 0).UTC(), nil
}

// tags returns the versions (without m.tagPrefix) of m's release tags that
// are ancestors of rev, or all of them when rev is "".
func (r *repository) tags(m *mod, rev string) ([]string, error) {
	args := []string{"tag", "--list", m.tagPrefix + "v*"}
	if rev != "" {
		args = append(args, "--merged", rev)
	}
	out, err := r.git(args...)
	if err != nil {
		return nil, err
	}
	_, pathMajor, _ := module.SplitPathVersion(m.path)
	var vs []string
	for _, t := range strings.Fields(out) {
		v := strings.TrimPrefix(t, m.tagPrefix)
		if !semver.IsValid(v) || semver.Canonical(v) != v || module.CheckPathMajor(v, pathMajor) != nil {
			continue
		}
		vs = append(vs, v)
	}
	semver.Sort(vs)
	return vs, nil
}

// latestTag returns m's newest release version (an ancestor of rev when rev
// is not ""), or "" when there is none.
func (r *repository) latestTag(m *mod, rev string) (string, error) {
	vs, err := r.tags(m, rev)
	if err != nil || len(vs) == 0 {
		return "", err
	}
	return vs[len(vs)-1], nil
}

// versionAt returns the version the go command gives m at rev: the tag of
// that commit, or a pseudo-version based on the newest tag before it.
func (r *repository) versionAt(m *mod, rev string) (string, error) {
	hash, t, err := r.commit(rev)
	if err != nil {
		return "", err
	}
	out, err := r.git("tag", "--list", m.tagPrefix+"v*", "--points-at", hash)
	if err != nil {
		return "", err
	}
	_, pathMajor, _ := module.SplitPathVersion(m.path)
	var exact []string
	for _, t := range strings.Fields(out) {
		v := strings.TrimPrefix(t, m.tagPrefix)
		if semver.IsValid(v) && semver.Canonical(v) == v && module.CheckPathMajor(v, pathMajor) == nil {
			exact = append(exact, v)
		}
	}
	if len(exact) > 0 {
		semver.Sort(exact)
		return exact[len(exact)-1], nil
	}
	older, err := r.latestTag(m, hash)
	if err != nil {
		return "", err
	}
	major := strings.TrimPrefix(pathMajor, "/")
	return module.PseudoVersion(major, older, t, hash[:12]), nil
}

// resolve finds the commit that version v of m names. It returns an error
// saying why when the version cannot exist.
func (r *repository) resolve(m *mod, v string) (string, time.Time, error) {
	if module.IsPseudoVersion(v) {
		rev, err := module.PseudoVersionRev(v)
		if err != nil {
			return "", time.Time{}, err
		}
		if module.IsZeroPseudoVersion(v) {
			return "", time.Time{}, errors.New("the zero pseudo-version names no commit (it is what `go mod edit -replace` writes; only a replace can satisfy it)")
		}
		hash, t, err := r.commit(rev)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("no commit %s in this repository", rev)
		}
		if !strings.HasPrefix(hash, rev) {
			return "", time.Time{}, fmt.Errorf("%s is not a 12-digit commit prefix", rev)
		}
		pt, err := module.PseudoVersionTime(v)
		if err != nil {
			return "", time.Time{}, err
		}
		if !pt.Equal(t) {
			return "", time.Time{}, fmt.Errorf("its time %s is not commit %s's commit time %s (UTC)",
				pt.Format("20060102150405"), rev, t.Format("20060102150405"))
		}
		if base, _ := module.PseudoVersionBase(v); base != "" {
			if _, _, err := r.commit("refs/tags/" + m.tagPrefix + base); err != nil {
				return "", time.Time{}, fmt.Errorf("its base tag %s%s does not exist", m.tagPrefix, base)
			}
		}
		return hash, t, nil
	}
	hash, t, err := r.commit("refs/tags/" + m.tagPrefix + v)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("no tag %s%s in this repository", m.tagPrefix, v)
	}
	return hash, t, nil
}

// requiredRoot returns the version of root that m's go.mod requires at rev
// ("" when it requires none), and whether that go.mod replaces root.
func (r *repository) requiredRoot(m, root *mod, rev string) (v string, replaced bool, err error) {
	data, err := r.git("show", rev+":"+m.dir+"/go.mod")
	if err != nil {
		return "", false, err
	}
	f, err := modfile.Parse(m.dir+"/go.mod", []byte(data), nil)
	if err != nil {
		return "", false, err
	}
	for _, rep := range f.Replace {
		if rep.Old.Path == root.path {
			replaced = true
		}
	}
	for _, req := range f.Require {
		if req.Mod.Path == root.path {
			return req.Mod.Version, replaced, nil
		}
	}
	return "", replaced, nil
}

type served struct {
	m    *mod
	v    string
	hash string
	t    time.Time
}

func build(r *repository, out, rootRev string, plan io.Writer) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	mods, err := r.modules("HEAD")
	if err != nil {
		return err
	}
	root := mods[0]
	want := map[string]served{} // key: path@version
	add := func(m *mod, v, hash string, t time.Time) {
		want[m.path+"@"+v] = served{m, v, hash, t}
	}
	problems := 0
	addRequired := func(m *mod, rev, v string) {
		if v == "" {
			return
		}
		hash, t, err := r.resolve(root, v)
		if err != nil {
			problems++
			fmt.Fprintf(os.Stderr, "ciproxy: %s/go.mod at %s requires %s@%s, which cannot be served: %v\n", m.dir, rev, root.path, v, err)
			return
		}
		if err := r.isAncestor(hash, "HEAD"); err != nil {
			fmt.Fprintf(os.Stderr, "ciproxy: warning: %s/go.mod at %s requires %s@%s, commit %s, which is not an ancestor of HEAD\n", m.dir, rev, root.path, v, hash[:12])
		}
		add(root, v, hash, t)
	}
	if rootRev != "" {
		v, err := r.versionAt(root, rootRev)
		if err != nil {
			return err
		}
		hash, t, err := r.commit(rootRev)
		if err != nil {
			return err
		}
		add(root, v, hash, t)
	}
	var lines []string
	for _, m := range mods {
		hv, err := r.versionAt(m, "HEAD")
		if err != nil {
			return err
		}
		hash, t, err := r.commit("HEAD")
		if err != nil {
			return err
		}
		add(m, hv, hash, t)
		req, rep := "-", "-"
		if m != root {
			v, replaced, err := r.requiredRoot(m, root, "HEAD")
			if err != nil {
				return err
			}
			addRequired(m, "HEAD", v)
			if v != "" {
				req = v
			}
			if replaced {
				rep = "replaced"
			}
			// The newest release of m, for the API check.
			if tag, err := r.latestTag(m, ""); err != nil {
				return err
			} else if tag != "" {
				v, _, err := r.requiredRoot(m, root, "refs/tags/"+m.tagPrefix+tag)
				if err != nil {
					return err
				}
				addRequired(m, m.tagPrefix+tag, v)
			}
		}
		lines = append(lines, strings.Join([]string{m.dir, m.path, hv, req, rep}, "\t"))
	}

	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lists := map[string][]string{}
	for _, k := range keys {
		s := want[k]
		if err := writeVersion(r, out, s); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if !module.IsPseudoVersion(s.v) {
			lists[s.m.path] = append(lists[s.m.path], s.v)
		} else if _, ok := lists[s.m.path]; !ok {
			lists[s.m.path] = nil
		}
		fmt.Fprintf(os.Stderr, "ciproxy: serving %s@%s (commit %s)\n", s.m.path, s.v, s.hash[:12])
	}
	for p, vs := range lists {
		ep, _ := module.EscapePath(p)
		semver.Sort(vs)
		var b strings.Builder
		for _, v := range vs {
			b.WriteString(v + "\n")
		}
		if err := os.WriteFile(filepath.Join(out, ep, "@v", "list"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	for _, l := range lines {
		fmt.Fprintln(plan, l)
	}
	if problems > 0 {
		fmt.Fprintf(os.Stderr, "ciproxy: %d required version(s) cannot be served; `go get` of the modules needing them will fail\n", problems)
	}
	return nil
}

func (r *repository) isAncestor(a, b string) error {
	_, err := r.git("merge-base", "--is-ancestor", a, b)
	return err
}

// writeVersion writes the .info, .mod and .zip files of one version.
func writeVersion(r *repository, out string, s served) error {
	ep, err := module.EscapePath(s.m.path)
	if err != nil {
		return err
	}
	ev, err := module.EscapeVersion(s.v)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, ep, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{s.v, s.t})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ev+".info"), info, 0o644); err != nil {
		return err
	}
	name := "go.mod"
	if s.m.dir != "." {
		name = s.m.dir + "/go.mod"
	}
	gomod, err := r.git("show", s.hash+":"+name)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ev+".mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	var zb bytes.Buffer
	if err := modzip.CreateFromVCS(&zb, module.Version{Path: s.m.path, Version: s.v}, r.dir, s.hash, s.m.subdir()); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ev+".zip"), zb.Bytes(), 0o644)
}

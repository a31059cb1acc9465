package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
)

// The go.work at the root makes local builds use the working tree of every
// module. In workspace mode the go command still reads the go.mod of the
// root module at each version a workspace module requires, and that version
// is only on a module proxy once published: so go.work also replaces the
// root at exactly those versions with ./ (a replace of a workspace module
// must name a version). work keeps that true.

// workState is what go.work should hold: every module directory in use and a
// replace of the root with ./ at each version some module requires.
type workState struct {
	rootPath string
	dirs     []string // "." first
	versions []string // root versions required by the other modules
}

// wantWork computes workState from the go.mod files in dirs, read by read.
func wantWork(dirs []string, read func(name string) ([]byte, error)) (*workState, error) {
	ws := &workState{}
	seen := map[string]bool{}
	data, err := read("go.mod")
	if err != nil {
		return nil, err
	}
	ws.rootPath = modfile.ModulePath(data)
	for _, dir := range dirs {
		if dir == "." {
			continue
		}
		name := path.Join(dir, "go.mod")
		data, err := read(name)
		if err != nil {
			return nil, err
		}
		f, err := modfile.Parse(name, data, nil)
		if err != nil {
			return nil, err
		}
		for _, req := range f.Require {
			if req.Mod.Path == ws.rootPath && !seen[req.Mod.Version] {
				seen[req.Mod.Version] = true
				ws.versions = append(ws.versions, req.Mod.Version)
			}
		}
	}
	if ws.rootPath == "" {
		return nil, errors.New("no module path in the root go.mod")
	}
	ws.dirs = dirs
	sort.Strings(ws.versions)
	return ws, nil
}

func useDir(dir string) string {
	if dir == "." {
		return "."
	}
	return "./" + dir
}

func isRootDir(p string) bool { return p == "." || p == "./" }

// workProblems lists how wf differs from ws.
func workProblems(wf *modfile.WorkFile, ws *workState) []string {
	var probs []string
	used := map[string]bool{}
	for _, u := range wf.Use {
		used[path.Clean(u.Path)] = true
	}
	for _, d := range ws.dirs {
		if !used[d] {
			probs = append(probs, fmt.Sprintf("go.work does not use %s", useDir(d)))
		}
		delete(used, d)
	}
	for d := range used {
		probs = append(probs, fmt.Sprintf("go.work uses %s, which holds no module", useDir(d)))
	}
	replaced := map[string]bool{}
	for _, r := range wf.Replace {
		if r.Old.Path != ws.rootPath {
			continue
		}
		if r.Old.Version == "" || !isRootDir(r.New.Path) {
			probs = append(probs, fmt.Sprintf("go.work: replace %s %s => %s: replace the root only at a version, with ./", r.Old.Path, r.Old.Version, r.New.Path))
			continue
		}
		replaced[r.Old.Version] = true
	}
	for _, v := range ws.versions {
		if !replaced[v] {
			probs = append(probs, fmt.Sprintf("go.work lacks `replace %s %s => ./` (a module requires that version; without it workspace builds fetch it from the proxy)", ws.rootPath, v))
		}
	}
	sort.Strings(probs)
	return probs
}

// workCheck checks the go.work of the HEAD commit.
func workCheck(r *repository) error {
	mods, err := r.modulesForWork("HEAD")
	if err != nil {
		return err
	}
	data, err := r.git("show", "HEAD:go.work")
	if err != nil {
		return fmt.Errorf("no go.work at HEAD: %w", err)
	}
	wf, err := modfile.ParseWork("go.work", []byte(data), nil)
	if err != nil {
		return err
	}
	ws, err := wantWork(mods, func(name string) ([]byte, error) {
		s, err := r.git("show", "HEAD:"+name)
		return []byte(s), err
	})
	if err != nil {
		return err
	}
	probs := workProblems(wf, ws)
	for _, p := range probs {
		fmt.Fprintln(os.Stderr, "ciproxy:", p)
	}
	if len(probs) > 0 {
		return fmt.Errorf("go.work at HEAD: %d problem(s); `bash .ci/release.sh work` fixes them in the work tree", len(probs))
	}
	fmt.Printf("go.work uses %d modules and replaces %s at %d required version(s) with ./\n", len(ws.dirs), ws.rootPath, len(ws.versions))
	return nil
}

// workWrite makes the work tree's go.work match its modules.
func workWrite(r *repository) error {
	var dirs []string
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel != "." && (d.Name() == ".git" || d.Name() == "vendor" || rel == ".ci" || skipWorkDir(rel)) {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			dirs = append(dirs, path.Dir(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i] == "." || (dirs[j] != "." && dirs[i] < dirs[j]) })
	ws, err := wantWork(dirs, func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(r.dir, name)) })
	if err != nil {
		return err
	}
	name := filepath.Join(r.dir, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	wf, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, d := range ws.dirs {
		want[d] = true
		if err := wf.AddUse(useDir(d), ""); err != nil {
			return err
		}
	}
	for _, u := range wf.Use {
		if !want[path.Clean(u.Path)] {
			if err := wf.DropUse(u.Path); err != nil {
				return err
			}
		}
	}
	required := map[string]bool{}
	for _, v := range ws.versions {
		required[v] = true
		if err := wf.AddReplace(ws.rootPath, v, "./", ""); err != nil {
			return err
		}
	}
	// Keep the versions HEAD's modules require too, so that committing
	// go.work before the go.mod files that move on leaves HEAD buildable.
	if dirs, err := r.modulesForWork("HEAD"); err == nil {
		if head, err := wantWork(dirs, func(name string) ([]byte, error) {
			s, err := r.git("show", "HEAD:"+name)
			return []byte(s), err
		}); err == nil {
			for _, v := range head.versions {
				if !required[v] {
					required[v] = true
					if err := wf.AddReplace(ws.rootPath, v, "./", ""); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, rep := range wf.Replace {
		if rep.Old.Path == ws.rootPath && !required[rep.Old.Version] {
			if err := wf.DropReplace(rep.Old.Path, rep.Old.Version); err != nil {
				return err
			}
		}
	}
	wf.SortBlocks()
	wf.Cleanup()
	out := modfile.Format(wf.Syntax)
	if err := os.WriteFile(name, out, 0o644); err != nil {
		return err
	}
	for _, p := range workProblems(wf, ws) {
		fmt.Fprintln(os.Stderr, "ciproxy: still:", p)
	}
	fmt.Printf("go.work: use %s; replace %s at %s with ./\n", strings.Join(ws.dirs, " "), ws.rootPath, strings.Join(ws.versions, " "))
	return nil
}

// skipWorkDir reports directories that hold no workspace module.
func skipWorkDir(rel string) bool {
	for _, e := range strings.Split(rel, "/") {
		if e == "testdata" || strings.HasPrefix(e, ".") || strings.HasPrefix(e, "_") {
			return true
		}
	}
	return false
}

// modulesForWork lists the module directories at rev that belong in go.work:
// every go.mod outside .ci/ (examples included).
func (r *repository) modulesForWork(rev string) ([]string, error) {
	out, err := r.git("ls-tree", "-r", "--name-only", rev)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, f := range strings.Split(strings.TrimSpace(out), "\n") {
		if path.Base(f) != "go.mod" {
			continue
		}
		dir := path.Dir(f)
		if dir != "." && skipWorkDir(dir) {
			continue
		}
		dirs = append(dirs, dir)
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i] == "." || (dirs[j] != "." && dirs[i] < dirs[j]) })
	return dirs, nil
}

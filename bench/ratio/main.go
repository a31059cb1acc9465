// Command ratio reads the output of this repository's benchmarks (go test
// -bench, any -count) and prints, per benchmark family, the median time and
// allocations of each implementation and its ratio to the family's
// baseline: the HMAC floor for Verify, the hand-written handler for
// Handler, encoding/json for ParseEvent. bench/run.sh uses it beside
// benchstat, which gives the confidence intervals.
//
//	go run ./bench/ratio < bench/results/raw.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// family describes one benchmark function whose sub-benchmarks are named
// Family/impl/case.
type family struct {
	name  string
	base  string
	impls []string
	// speedup prints base/impl (how many times faster than the baseline)
	// instead of impl/base (how many times the baseline's cost).
	speedup bool
}

var families = []family{
	{"Verify", "floor", []string{"floor", "tlwebhook", "svix"}, false},
	{"Handler", "handwritten", []string{"handwritten", "tlwebhook", "tlwebhook_untimed"}, true},
	{"ParseEvent", "encoding_json", []string{"encoding_json", "tlwebhook"}, true},
}

// sample holds the measurements of one benchmark across runs.
type sample struct {
	ns, allocs []float64
}

var line = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func main() {
	samples, order, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratio:", err)
		os.Exit(1)
	}
	for _, f := range families {
		print(os.Stdout, f, samples, order)
	}
}

func read(r io.Reader) (map[string]*sample, []string, error) {
	samples := map[string]*sample{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		s := samples[m[1]]
		if s == nil {
			s = &sample{}
			samples[m[1]] = s
			order = append(order, m[1])
		}
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				s.ns = append(s.ns, v)
			case "allocs/op":
				s.allocs = append(s.allocs, v)
			}
		}
	}
	return samples, order, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func print(w io.Writer, f family, samples map[string]*sample, order []string) {
	var cases []string
	for _, name := range order {
		parts := strings.SplitN(name, "/", 3)
		if len(parts) == 3 && parts[0] == f.name && !slices.Contains(cases, parts[2]) {
			cases = append(cases, parts[2])
		}
	}
	if len(cases) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s (medians)\t", f.name)
	for _, impl := range f.impls {
		fmt.Fprintf(tw, "%s\t", impl)
		switch {
		case impl == f.base:
		case f.speedup:
			fmt.Fprintf(tw, "speedup\t")
		default:
			fmt.Fprintf(tw, "%s/%s\t", impl, f.base)
		}
	}
	fmt.Fprintln(tw, "allocs/op\t")
	for _, c := range cases {
		base := samples[f.name+"/"+f.base+"/"+c]
		fmt.Fprintf(tw, "%s\t", c)
		var allocs []string
		for _, impl := range f.impls {
			s := samples[f.name+"/"+impl+"/"+c]
			if s == nil {
				fmt.Fprint(tw, "-\t")
				if impl != f.base {
					fmt.Fprint(tw, "-\t")
				}
				continue
			}
			fmt.Fprintf(tw, "%s\t", duration(median(s.ns)))
			if impl != f.base {
				switch {
				case base == nil:
					fmt.Fprint(tw, "-\t")
				case f.speedup:
					fmt.Fprintf(tw, "%.2fx\t", median(base.ns)/median(s.ns))
				default:
					fmt.Fprintf(tw, "%.2fx\t", median(s.ns)/median(base.ns))
				}
			}
			allocs = append(allocs, strconv.FormatFloat(median(s.allocs), 'f', -1, 64))
		}
		fmt.Fprintf(tw, "%s\t\n", strings.Join(allocs, " / "))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func duration(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2fms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2fµs", ns/1e3)
	}
	return fmt.Sprintf("%.0fns", ns)
}

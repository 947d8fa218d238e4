// The CRD's `pattern`s as the API server reads them (Go's regexp, RE2), for
// tests/unit/test_crd_validation.py: a JSON [pattern, string] per line in, "true" or "false" out.
// Standard library only, so it builds offline on any machine with the Go toolchain.

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

func main() {
	compiled := map[string]*regexp.Regexp{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		var in [2]string
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			panic(err)
		}
		re, ok := compiled[in[0]]
		if !ok {
			re = regexp.MustCompile(in[0])
			compiled[in[0]] = re
		}
		fmt.Fprintln(w, re.MatchString(in[1]))
	}
}

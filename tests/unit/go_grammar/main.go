// The Go originals that operator/src/miniseries/api/grammar.py ports, as a filter for
// tests/unit/test_grammar.py: JSON strings in, one verdict per line out.
// `q`: k8s.io/apimachinery resource.ParseQuantity; `i`: distribution/reference ParseNormalizedNamed.

package main

import (
	"bufio"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"os"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/api/resource"
)

type out struct {
	In    string `json:"in"`
	OK    bool   `json:"ok"`
	Value string `json:"value,omitempty"`
	Neg   bool   `json:"neg,omitempty"`
	Err   string `json:"err,omitempty"`
}

func main() {
	mode := os.Args[1]
	sc := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var s string
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			panic(err)
		}
		o := out{In: s}
		if mode == "q" {
			q, err := resource.ParseQuantity(s)
			if err != nil {
				o.Err = err.Error()
			} else {
				o.OK = true
				o.Value = q.AsDec().String()
				o.Neg = q.Sign() < 0
			}
		} else {
			n, err := reference.ParseNormalizedNamed(s)
			if err != nil {
				o.Err = err.Error()
			} else {
				o.OK = true
				o.Value = n.String()
			}
		}
		enc.Encode(o)
	}
	fmt.Fprintln(os.Stderr, "done")
}

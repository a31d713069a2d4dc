// Command go-verifier checks a Bulwark audit checkpoint and its proofs with
// the standard Go transparency-log libraries only (golang.org/x/mod/sumdb/note,
// github.com/transparency-dev/formats/log, github.com/transparency-dev/merkle),
// independently of the service's TypeScript code.
//
// Input (a JSON file given with -input, or standard input):
//
//	{
//	  "verifierKey": "<name>+<8 hex>+<base64>",
//	  "origin":      "<expected origin>",          // default: the key name
//	  "checkpoint":  "<signed note>",
//	  "leaves":      [{"index": 0, "leaf": "<base64 leaf bytes>", "proof": ["<base64>", ...]}],
//	  "allLeaves":   true,                         // the leaves are the whole log: recompute the root
//	  "consistency": [{"checkpoint": "<older signed note>", "proof": ["<base64>", ...]},
//	                  {"size": 3, "root": "<base64>", "proof": [...]}]
//	}
//
// It prints a JSON summary and exits 0 when everything verifies; otherwise it
// prints the first failure on standard error and exits 1.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type leafInput struct {
	Index uint64   `json:"index"`
	Leaf  []byte   `json:"leaf"`
	Proof [][]byte `json:"proof"`
}

type consistencyInput struct {
	Checkpoint string   `json:"checkpoint"`
	Size       uint64   `json:"size"`
	Root       []byte   `json:"root"`
	Proof      [][]byte `json:"proof"`
}

type input struct {
	VerifierKey string             `json:"verifierKey"`
	Origin      string             `json:"origin"`
	Checkpoint  string             `json:"checkpoint"`
	Leaves      []leafInput        `json:"leaves"`
	AllLeaves   bool               `json:"allLeaves"`
	Consistency []consistencyInput `json:"consistency"`
}

type summary struct {
	OK                bool   `json:"ok"`
	Origin            string `json:"origin"`
	Size              uint64 `json:"size"`
	Root              []byte `json:"root"`
	InclusionChecked  int    `json:"inclusionChecked"`
	RootRecomputed    bool   `json:"rootRecomputed"`
	ConsistencyChecks int    `json:"consistencyChecked"`
}

func run(in input) (*summary, error) {
	v, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	origin := in.Origin
	if origin == "" {
		origin = v.Name()
	}
	cp, _, _, err := log.ParseCheckpoint([]byte(in.Checkpoint), origin, v)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	s := &summary{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash}
	h := rfc6962.DefaultHasher
	for _, l := range in.Leaves {
		if err := proof.VerifyInclusion(h, l.Index, cp.Size, h.HashLeaf(l.Leaf), l.Proof, cp.Hash); err != nil {
			return nil, fmt.Errorf("inclusion of leaf %d: %w", l.Index, err)
		}
		s.InclusionChecked++
	}
	if in.AllLeaves {
		if uint64(len(in.Leaves)) != cp.Size {
			return nil, fmt.Errorf("all leaves: %d leaves for a tree of size %d", len(in.Leaves), cp.Size)
		}
		rf := compact.RangeFactory{Hash: h.HashChildren}
		r := rf.NewEmptyRange(0)
		for i, l := range in.Leaves {
			if l.Index != uint64(i) {
				return nil, fmt.Errorf("all leaves: leaf %d is out of order (index %d)", i, l.Index)
			}
			if err := r.Append(h.HashLeaf(l.Leaf), nil); err != nil {
				return nil, err
			}
		}
		root := h.EmptyRoot()
		if cp.Size > 0 {
			if root, err = r.GetRootHash(nil); err != nil {
				return nil, err
			}
		}
		if string(root) != string(cp.Hash) {
			return nil, errors.New("all leaves: the recomputed root does not match the checkpoint")
		}
		s.RootRecomputed = true
	}
	for i, c := range in.Consistency {
		size, root := c.Size, c.Root
		if c.Checkpoint != "" {
			old, _, _, err := log.ParseCheckpoint([]byte(c.Checkpoint), origin, v)
			if err != nil {
				return nil, fmt.Errorf("consistency %d: older checkpoint: %w", i, err)
			}
			size, root = old.Size, old.Hash
		}
		if err := proof.VerifyConsistency(h, size, cp.Size, c.Proof, root, cp.Hash); err != nil {
			return nil, fmt.Errorf("consistency %d (%d to %d): %w", i, size, cp.Size, err)
		}
		s.ConsistencyChecks++
	}
	s.OK = true
	return s, nil
}

func main() {
	path := flag.String("input", "-", "JSON input file (- for standard input)")
	flag.Parse()
	var r io.Reader = os.Stdin
	if *path != "-" {
		f, err := os.Open(*path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		r = f
	}
	var in input
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "input:", err)
		os.Exit(2)
	}
	s, err := run(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(s)
}

// Decodes request bodies the way Go MCP servers do: encoding/json into
// structs (the official go-sdk and mark3labs/mcp-go both do this). Struct
// fields match object keys case-insensitively, with Unicode simple folding
// (U+017F 'ſ' matches 's', U+212A KELVIN SIGN matches 'k'), and the last
// matching key wins. Go ignores the Content-Type charset: the bytes are
// decoded as UTF-8.
//
// stdin: one JSON object per line {"case", "body_hex", ...};
// stdout: one line per case {"case", "decoder", "status", "error", "messages"}.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
)

// The argument struct a Go tool handler declares for echo(text, kind).
type echoArgs struct {
	Text *string `json:"text"`
	Kind *string `json:"kind"`
}

type callParams struct {
	Name      *string         `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// One wire message: request, notification or response (go-sdk's jsonrpc2
// decodes into one combined struct and classifies afterwards).
type wire struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

type view struct {
	Kind   string  `json:"kind"`
	ID     any     `json:"id"`
	Method *string `json:"method"`
	Tool   *string `json:"tool"`
	Text   *string `json:"text"`
	KindA  *string `json:"kind_arg"`
	Err    string  `json:"error,omitempty"`
}

type out struct {
	Case     string `json:"case"`
	Decoder  string `json:"decoder"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Messages []view `json:"messages"`
}

func decodeOne(raw json.RawMessage) (view, error) {
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		return view{}, err
	}
	v := view{Method: w.Method}
	if len(w.ID) > 0 {
		v.ID = string(w.ID)
	}
	switch {
	case w.Method != nil && len(w.ID) > 0 && string(w.ID) != "null":
		v.Kind = "request"
	case w.Method != nil:
		v.Kind = "notification"
	default:
		v.Kind = "response"
	}
	if w.Method != nil && *w.Method == "tools/call" && len(w.Params) > 0 {
		var p callParams
		if err := json.Unmarshal(w.Params, &p); err != nil {
			return view{}, err
		}
		v.Tool = p.Name
		if len(p.Arguments) > 0 && string(p.Arguments) != "null" {
			var a echoArgs
			if err := json.Unmarshal(p.Arguments, &a); err != nil {
				return view{}, err
			}
			v.Text, v.KindA = a.Text, a.Kind
		}
	}
	return v, nil
}

func decode(body []byte) out {
	o := out{Decoder: "go-encoding-json", Status: "ok", Messages: []view{}}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var raws []json.RawMessage
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			o.Status, o.Error = "rejected", err.Error()
			return o
		}
	} else {
		var one json.RawMessage
		if err := json.Unmarshal(body, &one); err != nil {
			o.Status, o.Error = "rejected", err.Error()
			return o
		}
		raws = []json.RawMessage{one}
	}
	for _, r := range raws {
		v, err := decodeOne(r)
		if err != nil {
			o.Status, o.Error, o.Messages = "rejected", err.Error(), []view{}
			return o
		}
		o.Messages = append(o.Messages, v)
	}
	return o
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c struct {
			Case    string `json:"case"`
			BodyHex string `json:"body_hex"`
		}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			os.Exit(2)
		}
		body, err := hex.DecodeString(c.BodyHex)
		if err != nil {
			os.Exit(2)
		}
		o := decode(body)
		o.Case = c.Case
		if err := enc.Encode(o); err != nil {
			os.Exit(2)
		}
	}
}

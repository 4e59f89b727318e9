package injection

import (
	"bytes"
)

// A request to an LLM API carries the conversation: the operator's system
// prompt, the user's turns, the model's own turns, and the results of the
// tools the agent ran. Only the tool results are data from outside; the
// rest are the instructions the agent is meant to follow. The pattern
// layers read everything (an override pasted into a user turn is still
// worth a signal), but the learned layer judges whether text addresses
// the assistant with an instruction, which every user turn does: on a
// chat request it reads only what came from tools.

// span is a byte range [start, end) of a body.
type span struct{ start, end int }

// chatUntrusted reads body as a chat request and returns where its tool
// results are: the content of messages whose role is tool, function or
// ipython (or any role it does not know), the content of Anthropic
// tool_result blocks, and the output of OpenAI Responses
// function_call_output items. ok is false when body is not a chat request
// (no top-level "messages" or "input" array): all of it is then
// untrusted. A body cut short (the scan window) or malformed inside an
// item that is not a trusted turn is untrusted from that item to its end.
//
// It reads the structure only, never decoding a string it skips: a
// string is skipped with a search for its closing quote. JSON libraries
// decode the strings they pass (gjson's ForEach, encoding/json's
// tokenizer), which cost more than the learned layer itself on a 16 KiB
// request; TestChatUntrustedAgreesWithGJSON holds this reader to gjson's
// reading of the same bodies.
func chatUntrusted(body []byte) (spans []span, ok bool) {
	if !bytes.Contains(body, []byte(`"messages"`)) && !bytes.Contains(body, []byte(`"input"`)) {
		return nil, false
	}
	j := jsonScan(body)
	i := j.ws(0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	// The conversation is "messages" (chat completions, Anthropic) or,
	// failing that, "input" (Responses); the first of each key counts.
	messages, input := -1, -1
	j.object(i, func(key []byte, vs, ve int, _ bool) bool {
		if vs < len(body) && body[vs] == '[' {
			switch {
			case string(key) == "messages" && messages < 0:
				messages = vs
			case string(key) == "input" && input < 0:
				input = vs
			}
		}
		return true
	})
	at := messages
	if at < 0 {
		at = input
	}
	if at < 0 {
		return nil, false
	}
	j.array(at, func(is, ie int, complete bool) bool {
		spans = j.item(spans, is, ie, complete)
		// A span that runs to the end leaves nothing more to read.
		return len(spans) == 0 || spans[len(spans)-1].end < len(body)
	})
	return spans, true
}

// jsonScan walks the structure of a JSON document.
type jsonScan []byte

func (b jsonScan) ws(i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// str returns the end of the string that starts at b[i] == '"', and
// whether it was closed.
func (b jsonScan) str(i int) (int, bool) {
	i++
	for {
		k := bytes.IndexByte(b[i:], '"')
		if k < 0 {
			return len(b), false
		}
		i += k
		n := 0
		for n < i && b[i-1-n] == '\\' {
			n++
		}
		i++
		if n%2 == 0 {
			return i, true
		}
	}
}

// value returns the end of the value at b[i], and whether it was
// complete.
func (b jsonScan) value(i int) (int, bool) {
	if i >= len(b) {
		return len(b), false
	}
	switch b[i] {
	case '"':
		return b.str(i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, ok := b.str(i)
				if !ok {
					return end, false
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return len(b), false
	}
	for i < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[i]) < 0 {
		i++
	}
	return i, i < len(b)
}

// object calls f with each key of the object at b[i] == '{' and where its
// value starts and ends, and whether the value was complete, until f
// returns false; it returns whether the object was complete and well
// formed.
func (b jsonScan) object(i int, f func(key []byte, vs, ve int, complete bool) bool) bool {
	i = b.ws(i + 1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) && b[i] == '"' {
		kend, ok := b.str(i)
		if !ok {
			return false
		}
		key := b[i+1 : kend-1]
		i = b.ws(kend)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		vs := b.ws(i + 1)
		ve, complete := b.value(vs)
		if !f(key, vs, ve, complete) || !complete {
			return false
		}
		i = b.ws(ve)
		if i < len(b) && b[i] == '}' {
			return true
		}
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i = b.ws(i + 1)
	}
	return false
}

// array calls f with where each element of the array at b[i] == '['
// starts and ends and whether it was complete, until f returns false.
func (b jsonScan) array(i int, f func(s, e int, complete bool) bool) {
	i = b.ws(i + 1)
	if i < len(b) && b[i] == ']' {
		return
	}
	for i < len(b) {
		e, complete := b.value(i)
		if !f(i, e, complete) || !complete {
			return
		}
		i = b.ws(e)
		if i >= len(b) || b[i] != ',' {
			return
		}
		i = b.ws(i + 1)
	}
}

// strValue returns the raw text of the string value at b[s:e], or nil if
// it is none.
func (b jsonScan) strValue(s, e int) []byte {
	if e-s >= 2 && b[s] == '"' && b[e-1] == '"' {
		return b[s+1 : e-1]
	}
	return nil
}

// item adds the untrusted spans of the conversation item at b[s:e].
func (b jsonScan) item(spans []span, s, e int, complete bool) []span {
	if s >= len(b) || b[s] != '{' {
		return spans // a bare string: a user turn
	}
	var role, typ []byte
	hasRole := false
	var content, output span
	whole := b.object(s, func(key []byte, vs, ve int, complete bool) bool {
		switch string(key) {
		case "role":
			role, hasRole = b.strValue(vs, ve), true
		case "type":
			typ = b.strValue(vs, ve)
		case "content":
			content = span{vs, ve}
		case "output":
			output = span{vs, ve}
		}
		return true
	})
	trusted := hasRole && trustedRoles[string(role)]
	switch t := string(typ); {
	case (!whole || !complete) && !trusted:
		// Cut or malformed: from here on it is untrusted.
		return append(spans, span{s, len(b)})
	case !whole || !complete:
		// A trusted turn cut short: only its tool_result blocks count.
		if content.end > content.start && b[content.start] == '[' {
			spans = b.toolResults(spans, content.start)
		}
	case t == "function_call_output" || t == "custom_tool_call_output":
		if output.end > output.start {
			spans = append(spans, output)
		}
	case !hasRole && t != "" && t != "message":
		// A Responses item that is no message (a function call, a
		// reasoning summary): the model's own.
	case !trusted:
		if content.end > content.start {
			spans = append(spans, content)
		}
	case content.end > content.start && b[content.start] == '[':
		spans = b.toolResults(spans, content.start)
	}
	return spans
}

// toolResults adds the content of the tool_result blocks in the array at
// b[i]; a block cut short is untrusted to the end.
func (b jsonScan) toolResults(spans []span, i int) []span {
	b.array(i, func(bs, be int, complete bool) bool {
		if bs >= len(b) || b[bs] != '{' {
			return true
		}
		var btype []byte
		var bcontent span
		whole := b.object(bs, func(key []byte, vs, ve int, _ bool) bool {
			switch string(key) {
			case "type":
				btype = b.strValue(vs, ve)
			case "content":
				bcontent = span{vs, ve}
			}
			return true
		})
		switch {
		case !whole || !complete:
			spans = append(spans, span{bs, len(b)})
			return false
		case string(btype) == "tool_result" && bcontent.end > bcontent.start:
			spans = append(spans, bcontent)
		}
		return true
	})
	return spans
}

// trustedRoles are the turns of the operator, the user and the model.
var trustedRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "model": true}

package rpc_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzRequest sends arbitrary requests to every method of the API, on the
// fixture: method picks one (an index into methods, which are in name
// order; each seed in testdata is named after its method) and req is the
// request's wire bytes. Whatever comes in, no handler panics, and every
// error is one the API's contract allows (see api.check): invalid input is
// INVALID_ARGUMENT naming fields of the request, never an internal error;
// whatever is accepted is stored as a record that decodes to itself. A
// list longer than its maximum, or a timestamp that is no instant, is
// always refused by name.
func FuzzRequest(f *testing.F) {
	x := newAPI(f)
	all := methods(f)
	f.Fuzz(func(t *testing.T, method byte, req []byte) {
		m := all[int(method)%len(all)]
		in := newRequest(t, m)
		if err := proto.Unmarshal(req, in); err != nil {
			return
		}
		fields := x.check(t, m, x.call(t, context.Background(), m, in))
		for _, path := range mustBeNamed(in.ProtoReflect()) {
			if !slices.Contains(fields, path) {
				t.Errorf("%s: %s is not refused; violations %q", m.Name(), path, fields)
			}
		}
	})
}

// mustBeNamed returns the paths of req that validation must refuse by
// name: every list longer than its maximum (maxItems), and every timestamp
// that is no instant outside such a list.
func mustBeNamed(req protoreflect.Message) []string {
	name := string(req.Descriptor().FullName())
	var out []string
	// path is the field's path in req; key its path in maxItems, where
	// "[0]" stands for every element of a list.
	var walk func(m protoreflect.Message, path, key string)
	walk = func(m protoreflect.Message, path, key string) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			path, key := path+string(fd.Name()), key+string(fd.Name())
			switch {
			case fd.IsList():
				if max, ok := maxItems[name+" "+key]; ok && v.List().Len() > max {
					out = append(out, path)
				} else if fd.Message() != nil {
					for i := range v.List().Len() {
						walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d].", path, i), key+"[0].")
					}
				}
			case fd.IsMap() || fd.Message() == nil:
			case fd.Message().FullName() == timestampName:
				if ts, ok := v.Message().Interface().(*timestamppb.Timestamp); ok && ts.CheckValid() != nil {
					out = append(out, path)
				}
			default:
				walk(v.Message(), path+".", key+".")
			}
			return true
		})
	}
	walk(req, "", "")
	return out
}

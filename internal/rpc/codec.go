package rpc

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"spa/internal/spa"
)

// Codec returns the server option for the API's codec: protobuf, except
// that a request whose bytes are not a valid message (truncated, invalid
// UTF-8 in a string) is answered INVALID_ARGUMENT by the error
// interceptors, like any other bad input, rather than gRPC's INTERNAL.
func Codec() grpc.ServerOption { return grpc.ForceServerCodec(lenientCodec{}) }

// lenientCodec decodes like gRPC's protobuf codec; a message it cannot
// decode it leaves empty but for a mark in its unknown fields, which
// malformed finds.
type lenientCodec struct{}

var _ encoding.Codec = lenientCodec{}

func (lenientCodec) Name() string { return "proto" }

func (lenientCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rpc: cannot encode %T", v)
	}
	return proto.Marshal(m)
}

func (lenientCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rpc: cannot decode into %T", v)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		proto.Reset(m)
		mark := protowire.AppendTag(nil, malformedField, protowire.BytesType)
		mark = protowire.AppendString(mark, err.Error())
		m.ProtoReflect().SetUnknown(protoreflect.RawFields(mark))
	}
	return nil
}

// malformedField is the field number of the mark: the largest there is,
// used by no message of the API.
const malformedField = protowire.MaxValidNumber

// malformed returns a KindInvalid error if req was marked as bytes that
// are not a valid message.
func malformed(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	unknown := m.ProtoReflect().GetUnknown()
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			return nil
		}
		unknown = unknown[n:]
		if num == malformedField && typ == protowire.BytesType {
			why, _ := protowire.ConsumeString(unknown)
			return &spa.Error{Kind: spa.KindInvalid, Message: "invalid request", Violations: []spa.Violation{{Field: "(request)", Description: "is not a valid " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + why}}}
		}
		n = protowire.ConsumeFieldValue(num, typ, unknown)
		if n < 0 {
			return nil
		}
		unknown = unknown[n:]
	}
	return nil
}

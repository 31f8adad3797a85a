package kafkax

import "github.com/cloudwego/gopkg/protocol/thrift"

// Encode serialises a Kafka record struct from idl/kitex_gen/events with
// Thrift binary, the encoding every GoChat topic uses.
func Encode(msg thrift.FastCodec) []byte { return thrift.FastMarshal(msg) }

// Decode parses a record produced by Encode.
func Decode(b []byte, msg thrift.FastCodec) error { return thrift.FastUnmarshal(b, msg) }

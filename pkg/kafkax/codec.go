package kafkax

import (
	"fmt"

	"github.com/cloudwego/gopkg/protocol/thrift"
)

// Encode serialises a Kafka record struct from idl/kitex_gen/events with
// Thrift binary, the encoding every GoChat topic uses.
func Encode(msg thrift.FastCodec) []byte { return thrift.FastMarshal(msg) }

// Decode parses a record produced by Encode. Malformed input is an error,
// never a panic (the Thrift decoder can panic on some invalid type bytes,
// found by fuzzing the gateway's record reader).
func Decode(b []byte, msg thrift.FastCodec) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kafkax: malformed record: %v", r)
		}
	}()
	return thrift.FastUnmarshal(b, msg)
}

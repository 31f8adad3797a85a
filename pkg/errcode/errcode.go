// Package errcode is the one list of GoChat's error codes. The same numbers
// appear in client error frames (docs/PROTOCOL.md) and in Kitex business
// status errors, so a code means the same thing wherever it is seen.
//
// Ranges: 1xxx the request is wrong (fix it, do not retry as is); 2xxx
// authentication; 3xxx the request names something that does not exist or is
// not allowed; 4xxx limits; 5xxx the server failed (retry with backoff).
package errcode

import (
	"errors"
	"fmt"

	"github.com/cloudwego/kitex/pkg/kerrors"
)

// Code is a GoChat error code.
type Code int32

const (
	BadRequest   Code = 1000 // malformed or incomplete request
	BadJSON      Code = 1001 // a frame that is not valid JSON
	UnknownType  Code = 1002 // a frame type the server does not know
	BadField     Code = 1003 // a field is missing or out of range
	TooLarge     Code = 1004 // message body over the size limit
	Unsupported  Code = 1005 // this server does not support the operation
	BadMsgpack   Code = 1006 // a binary frame that is not one valid MessagePack map
	Unauthorized Code = 2001 // missing, bad or expired token
	Forbidden    Code = 2003 // authenticated but not allowed
	UserNotFound Code = 3001 // the recipient does not exist
	ConvNotFound Code = 3002 // conversation does not exist or caller is not in it
	RateLimited  Code = 4001 // too many requests; slow down
	Internal     Code = 5000 // unexpected server failure
	Unavailable  Code = 5003 // a dependency is down; retry later
)

var names = map[Code]string{
	BadRequest:   "bad_request",
	BadJSON:      "bad_json",
	UnknownType:  "unknown_type",
	BadField:     "bad_field",
	TooLarge:     "too_large",
	Unsupported:  "unsupported",
	BadMsgpack:   "bad_msgpack",
	Unauthorized: "unauthorized",
	Forbidden:    "forbidden",
	UserNotFound: "user_not_found",
	ConvNotFound: "conv_not_found",
	RateLimited:  "rate_limited",
	Internal:     "internal",
	Unavailable:  "unavailable",
}

// String returns the code's short name.
func (c Code) String() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("code_%d", int32(c))
}

// Retryable reports whether a client may retry the same request later.
func (c Code) Retryable() bool { return c >= 5000 || c == RateLimited }

// Error is an error carrying a code.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, int32(e.Code), e.Msg) }

// New returns an *Error.
func New(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}

// Biz returns a Kitex business status error for c, for handlers to return.
func Biz(c Code, format string, args ...any) error {
	return kerrors.NewBizStatusError(int32(c), fmt.Sprintf(format, args...))
}

// ToBiz converts err for a Kitex handler: an *Error or a business status
// error keeps its code; anything else becomes Internal.
func ToBiz(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := kerrors.FromBizStatusError(err); ok {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return kerrors.NewBizStatusError(int32(e.Code), e.Msg)
	}
	return kerrors.NewBizStatusError(int32(Internal), err.Error())
}

// Of returns the code and message of err: the business code of a Kitex
// business status error or *Error, Unavailable for other errors (a transport
// failure or timeout), and 0 for nil.
func Of(err error) (Code, string) {
	if err == nil {
		return 0, ""
	}
	if be, ok := kerrors.FromBizStatusError(err); ok {
		return Code(be.BizStatusCode()), be.BizMessage()
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Msg
	}
	return Unavailable, err.Error()
}

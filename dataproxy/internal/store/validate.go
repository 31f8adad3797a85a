package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gochat-im/gochat/pkg/errcode"
	"github.com/gochat-im/gochat/pkg/ids"
	"github.com/gochat-im/gochat/pkg/protocol"
)

// validateItem checks one AppendItem; nil means it may be stored.
func validateItem(it *AppendItem, maxBody int) *errcode.Error {
	if !ids.ValidUID(it.Sender) {
		return errcode.New(errcode.BadField, "sender %q is not a valid user id", clip(it.Sender))
	}
	if a, b, ok := ids.ParseP2P(it.ConvID); ok {
		if it.Sender == it.Recipient || (it.Sender != a && it.Sender != b) || (it.Recipient != a && it.Recipient != b) {
			return errcode.New(errcode.BadField, "sender %q and recipient %q are not the two users of %q",
				clip(it.Sender), clip(it.Recipient), it.ConvID)
		}
	} else if ids.ValidConv(it.ConvID) {
		if it.Recipient != "" {
			return errcode.New(errcode.BadField, "a group message has no recipient")
		}
	} else {
		return errcode.New(errcode.BadField, "conversation id %q is not valid", clip(it.ConvID))
	}
	if n := len(it.ClientMsgID); n == 0 || n > MaxClientMsgID {
		return errcode.New(errcode.BadField, "client_msg_id must be 1-%d bytes, got %d", MaxClientMsgID, n)
	}
	if n := len(it.ContentType); n > MaxContentType {
		return errcode.New(errcode.BadField, "content_type must be at most %d bytes, got %d", MaxContentType, n)
	}
	if n := len(it.Body); n > maxBody {
		return errcode.New(errcode.TooLarge, "body is %d bytes, the limit is %d", n, maxBody)
	}
	if it.CreatedAtMs < 0 {
		return errcode.New(errcode.BadField, "created_at_ms is negative")
	}
	switch {
	case it.RecallSeq < 0:
		return errcode.New(errcode.BadField, "recall_seq is negative")
	case it.RecallSeq > 0 && it.RecallWindowMs < 0:
		return errcode.New(errcode.BadField, "recall_window_ms is negative")
	case it.RecallSeq == 0 && it.ByOperator:
		return errcode.New(errcode.BadField, "by_operator is for recalls (recall_seq > 0) only")
	case it.ByOperator && it.ClientMsgID != protocol.OperatorRecallCMID(it.RecallSeq):
		return errcode.New(errcode.BadField, "the operator's recall of message %d has client_msg_id %s", it.RecallSeq, protocol.OperatorRecallCMID(it.RecallSeq))
	case it.RecallSeq == 0 && it.ContentType == protocol.ContentTypeRecall:
		return errcode.New(errcode.BadField, "content type %q is for recalls (recall_seq > 0) only", protocol.ContentTypeRecall)
	}
	return nil
}

func validateUser(u *User) *errcode.Error {
	if !ids.ValidUID(u.UID) {
		return errcode.New(errcode.BadField, "uid %q is not valid", clip(u.UID))
	}
	if !utf8.ValidString(u.Name) || utf8.RuneCountInString(u.Name) > MaxUserName {
		return errcode.New(errcode.BadField, "name of %q must be valid UTF-8 of at most %d characters", u.UID, MaxUserName)
	}
	if u.CreatedAtMs < 0 {
		return errcode.New(errcode.BadField, "created_at_ms of %q is negative", u.UID)
	}
	return nil
}

// clip shortens a caller-supplied value quoted in an error message.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// syncLimit applies the default and the cap to a SyncMessages limit.
func syncLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, errcode.New(errcode.BadField, "limit is negative")
	case limit == 0:
		return DefaultSyncLimit, nil
	case limit > MaxSyncLimit:
		return MaxSyncLimit, nil
	}
	return limit, nil
}

func convLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, errcode.New(errcode.BadField, "limit is negative")
	case limit == 0:
		return DefaultConvLimit, nil
	case limit > MaxConvLimit:
		return MaxConvLimit, nil
	}
	return limit, nil
}

// badConv is the error for a malformed conversation id.
func badConv(conv string) error {
	return errcode.New(errcode.BadField, "conversation id %q is not valid", clip(conv))
}

func badField(format string, args ...any) error {
	return errcode.New(errcode.BadField, format, args...)
}

func convNotFound(conv string) error {
	return errcode.New(errcode.ConvNotFound, "conversation %q has no messages", conv)
}

// errInconsistent reports a database whose rows contradict each other.
func errInconsistent(conv string, format string, args ...any) error {
	return &dataError{msg: fmt.Sprintf("store: conversation %s is inconsistent: %s", conv, fmt.Sprintf(format, args...))}
}

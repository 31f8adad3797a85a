// Package protocol defines GoChat's client protocol: JSON objects carried in
// WebSocket text frames, one object per frame, told apart by "type" (or the
// same objects in MessagePack, in binary frames, for clients that ask for
// it).
// docs/PROTOCOL.md is the reference for client developers; this package is
// what the gateway, the bench tools and the tests encode and decode.
package protocol

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WebSocket subprotocols a client may ask for in Sec-WebSocket-Protocol.
// Without one, or with SubprotocolJSON, every frame is a JSON object in a
// text frame. With SubprotocolMsgpack every frame is the same object as
// one MessagePack map in a binary frame (AppendMsgpack and
// AppendJSONFromMsgpack convert between the two).
const (
	SubprotocolJSON    = "gochat.json"
	SubprotocolMsgpack = "gochat.msgpack"
)

// Frame types sent by clients.
const (
	TypeSend          = "send"
	TypeSync          = "sync"
	TypeConversations = "conversations"
	TypePing          = "ping"
	// Cursors and events; "read" and "typing" are also what the server
	// pushes to the other side.
	TypeRead      = "read"
	TypeDelivered = "delivered"
	TypeTyping    = "typing"
	TypeRecall    = "recall"
)

// Group operations, answered by logic (the reply has the same type).
const (
	TypeGroupCreate   = "group_create"
	TypeGroupAdd      = "group_add"
	TypeGroupRemove   = "group_remove"
	TypeGroupLeave    = "group_leave"
	TypeGroupDissolve = "group_dissolve"
	TypeGroupInfo     = "group_info"
	TypeGroupMembers  = "group_members"
	TypeGroups        = "groups"
)

// ContentTypeRecall marks the event message a recall leaves in the
// conversation; its ref_seq is the recalled message.
const ContentTypeRecall = "gochat.recall"

// MaxContentTypeLen is the longest content_type a sender may give.
const MaxContentTypeLen = 64

// ValidContentType reports whether a sender may give ct as a message's
// content_type: at most MaxContentTypeLen bytes of A-Z a-z 0-9 / . + _ -
// (a media type without parameters, or a name of the app's own), and
// not ContentTypeRecall, which only recalls leave. The empty string, which
// means "text", is valid.
func ValidContentType(ct string) bool {
	if len(ct) > MaxContentTypeLen || ct == ContentTypeRecall {
		return false
	}
	for i := 0; i < len(ct); i++ {
		c := ct[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '/', c == '.', c == '+', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Frame types sent by the server. Replies to sync, conversations and ping
// reuse the request's type ("sync", "conversations") or answer "pong".
const (
	TypeHello = "hello"
	TypeAck   = "ack"
	TypeMsg   = "msg"
	TypePong  = "pong"
	TypeError = "error"
	TypeKick  = "kick"
)

// CloseReplaced is the WebSocket close code of a connection kicked by a
// newer login of the same user on the same kind of device.
const CloseReplaced = 4001

// Limits shared by the gateway and clients.
const (
	MaxClientMsgIDLen = 64
	MaxRequestIDLen   = 64
	MaxSyncLimit      = 200
	DefaultSyncLimit  = 50
)

// ReservedCMIDPrefix starts the client message ids of the messages GoChat
// writes itself (the operator's recalls, see OperatorRecallCMID); senders
// may not use it, so theirs never collide with those.
const ReservedCMIDPrefix = "gochat."

// ReservedCMID reports whether cmid starts with ReservedCMIDPrefix.
func ReservedCMID(cmid string) bool { return strings.HasPrefix(cmid, ReservedCMIDPrefix) }

// ValidClientMsgID reports whether a sender may give cmid as a client
// message id: 1 to MaxClientMsgIDLen bytes, not ReservedCMID.
func ValidClientMsgID(cmid string) bool {
	return len(cmid) > 0 && len(cmid) <= MaxClientMsgIDLen && !ReservedCMID(cmid)
}

// OperatorRecallCMID is the client message id of the operator's recall of
// message seq (made in the name of its sender): one id per message, so
// recalling it again is answered as a duplicate.
func OperatorRecallCMID(seq int64) string {
	return ReservedCMIDPrefix + "recall:" + strconv.FormatInt(seq, 10)
}

// CutUTF8 returns s cut to at most n bytes at a character boundary (s
// itself when it is no longer), for text such as message bodies that is
// valid UTF-8.
func CutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MaxRecallReason is the longest reason, in bytes, the operator may give
// a recall (logic's Recall RPC); it is the body of the recall event.
const MaxRecallReason = 256

// Envelope is decoded first to learn a frame's type.
type Envelope struct {
	Type string `json:"type"`
}

// Send asks the server to deliver a message.
type Send struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"cmid"`
	// Exactly one of To (a user) and Group.
	To          string `json:"to,omitempty"`
	Group       string `json:"group,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body"`
}

// SyncReq asks for a conversation's messages with seq > After.
type SyncReq struct {
	Type  string `json:"type"`
	RID   string `json:"rid,omitempty"`
	Conv  string `json:"conv"`
	After int64  `json:"after"`
	Limit int    `json:"limit,omitempty"`
}

// ConversationsReq asks for the user's conversations.
type ConversationsReq struct {
	Type  string `json:"type"`
	RID   string `json:"rid,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// Ping is an application-level heartbeat; WebSocket ping frames work too.
type Ping struct {
	Type string `json:"type"`
	RID  string `json:"rid,omitempty"`
}

// Hello is the first frame after the upgrade, sent once the connection is
// registered: from then on pushes reach it.
type Hello struct {
	Type        string `json:"type"`
	UID         string `json:"uid"`
	Device      string `json:"device"`
	ConnID      int64  `json:"conn"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	MaxBody     int    `json:"max_body"`
}

// Ack confirms that a send is durable.
type Ack struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"cmid"`
	Conv        string `json:"conv"`
	Seq         int64  `json:"seq"`
	TS          int64  `json:"ts"`
	Duplicate   bool   `json:"dup,omitempty"`
}

// Message is a chat message as clients see it, pushed with Type "msg" and
// listed without Type in sync replies.
type Message struct {
	Type        string `json:"type,omitempty"`
	Conv        string `json:"conv"`
	Seq         int64  `json:"seq"`
	From        string `json:"from"`
	To          string `json:"to,omitempty"`
	ClientMsgID string `json:"cmid,omitempty"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	TS          int64  `json:"ts"`
	// The sender recalled it: the body is gone.
	Recalled bool `json:"recalled,omitempty"`
	// For a recall event (content type "gochat.recall"): the recalled seq.
	RefSeq int64 `json:"ref_seq,omitempty"`
}

// SyncResp answers a SyncReq.
type SyncResp struct {
	Type     string    `json:"type"`
	RID      string    `json:"rid,omitempty"`
	Conv     string    `json:"conv"`
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
	LastSeq  int64     `json:"last_seq"`
}

// Conversation is one entry of a ConversationsResp.
type Conversation struct {
	Conv         string `json:"conv"`
	Kind         string `json:"kind"`
	Peer         string `json:"peer,omitempty"`
	Name         string `json:"name,omitempty"`
	LastSeq      int64  `json:"last_seq"`
	UpdatedAt    int64  `json:"updated_at"`
	ReadSeq      int64  `json:"read_seq"`
	DeliveredSeq int64  `json:"delivered_seq"`
	Unread       int64  `json:"unread"`
}

// ConversationsResp answers a ConversationsReq.
type ConversationsResp struct {
	Type  string         `json:"type"`
	RID   string         `json:"rid,omitempty"`
	Items []Conversation `json:"items"`
}

// Pong answers a Ping.
type Pong struct {
	Type string `json:"type"`
	RID  string `json:"rid,omitempty"`
	TS   int64  `json:"ts"`
	// Cursor is the user's inbox cursor: the sum of last_seq over all the
	// user's conversations. A client whose own sum of highest seqs is
	// lower has missed messages and syncs. Absent when the server could
	// not read it.
	Cursor int64 `json:"cursor,omitempty"`
}

// Error reports a failed request. Code and Reason come from package
// errcode; ClientMsgID or RID names the request it answers, when known.
type Error struct {
	Type        string `json:"type"`
	Code        int32  `json:"code"`
	Reason      string `json:"reason"`
	Message     string `json:"message"`
	ClientMsgID string `json:"cmid,omitempty"`
	RID         string `json:"rid,omitempty"`
}

// Kick tells a connection it is being closed because a newer connection
// of the same user replaced it: on another device of the same kind, which
// the login policy allows once (Reason "replaced"), or with the same
// device id, which a user has one connection of (Reason "same_device").
type Kick struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	// Device is the device id of the new connection.
	Device string `json:"device,omitempty"`
}

// KickFrame is the JSON of the kick frame a connection gets before it is
// closed with CloseReplaced: logic's kick records carry it, and a gateway
// sends it itself to a connection refused within one Connect call.
func KickFrame(reason, device string) []byte {
	b, _ := json.Marshal(Kick{Type: TypeKick, Reason: reason, Device: device})
	return b
}

// Cursor reports, client to server, how far the client has received
// ("delivered") or read ("read") a conversation. The server pushes "read"
// to the other side of a one-to-one chat (UID says who read) and to the
// reader's other devices.
type Cursor struct {
	Type string `json:"type"`
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
	UID  string `json:"uid,omitempty"`
}

// Typing says, client to server, that the user is typing to To; the server
// pushes it to To's devices with Conv and From set. Nothing is stored.
type Typing struct {
	Type string `json:"type"`
	To   string `json:"to,omitempty"`
	Conv string `json:"conv,omitempty"`
	From string `json:"from,omitempty"`
}

// Recall asks to recall the sender's own message Seq of Conv. It is
// answered like a send (ack or error, matched by the cmid); the recall
// appears in the conversation as a message with content type
// "gochat.recall" and ref_seq = Seq.
type Recall struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"cmid"`
	Conv        string `json:"conv"`
	Seq         int64  `json:"seq"`
}

// Group describes a group.
type Group struct {
	ID          string `json:"group"`
	Name        string `json:"name"`
	Owner       string `json:"owner"`
	CreatedAt   int64  `json:"created_at"`
	MemberCount int    `json:"member_count"`
	Dissolved   bool   `json:"dissolved,omitempty"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	UID      string `json:"uid"`
	Role     string `json:"role"`
	JoinedAt int64  `json:"joined_at"`
}

// GroupReq is every group operation a client sends: Type says which, and
// each uses the fields it needs (see docs/PROTOCOL.md).
type GroupReq struct {
	Type    string   `json:"type"`
	RID     string   `json:"rid,omitempty"`
	Group   string   `json:"group,omitempty"`
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members,omitempty"`
	After   string   `json:"after_uid,omitempty"`
	Limit   int      `json:"limit,omitempty"`
}

// GroupResp answers a GroupReq.
type GroupResp struct {
	Type    string        `json:"type"`
	RID     string        `json:"rid,omitempty"`
	Group   *Group        `json:"group,omitempty"`
	Changed int           `json:"changed,omitempty"`
	Members []GroupMember `json:"members,omitempty"`
	HasMore bool          `json:"has_more,omitempty"`
	Groups  []Group       `json:"groups,omitempty"`
}

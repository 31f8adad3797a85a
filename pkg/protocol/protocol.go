// Package protocol defines GoChat's client protocol: JSON objects carried in
// WebSocket text frames, one object per frame, told apart by "type".
// docs/PROTOCOL.md is the reference for client developers; this package is
// what the gateway, the bench tools and the tests encode and decode.
package protocol

// Frame types sent by clients.
const (
	TypeSend          = "send"
	TypeSync          = "sync"
	TypeConversations = "conversations"
	TypePing          = "ping"
)

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

// Envelope is decoded first to learn a frame's type.
type Envelope struct {
	Type string `json:"type"`
}

// Send asks the server to deliver a message.
type Send struct {
	Type        string `json:"type"`
	ClientMsgID string `json:"cmid"`
	To          string `json:"to"`
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
	Conv      string `json:"conv"`
	Kind      string `json:"kind"`
	Peer      string `json:"peer,omitempty"`
	LastSeq   int64  `json:"last_seq"`
	UpdatedAt int64  `json:"updated_at"`
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

// Kick tells a connection it is being closed because the same user logged
// in on another device of the same kind (the login policy allows one).
type Kick struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	// Device is the device id of the new login.
	Device string `json:"device,omitempty"`
}

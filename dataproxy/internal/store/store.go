package store

import (
	"context"
	"errors"
	"fmt"
)

// Store is what the dataproxy handler needs from durable storage. Errors that
// carry a client-facing meaning are *errcode.Error values (see the method
// docs); any other error means the database failed and the call may be
// retried.
type Store interface {
	// AppendMessages validates each item and stores the valid ones, in
	// order, in one transaction per database: all of a database's items or
	// none of them (a call whose conversations live in several databases
	// can fail with some of them stored; calling again with the same
	// client msg ids stores the rest and answers the others as
	// duplicates). results[i] answers
	// items[i]. An invalid item gets ErrorCode/ErrorMessage and does not
	// stop the others. An item whose (conv, sender, client msg id) was
	// stored before, by an earlier call or earlier in the same batch, is
	// not stored again: its result carries the original seq and time with
	// Duplicate set. An error return means nothing was stored in at least
	// one of the databases involved.
	AppendMessages(ctx context.Context, items []AppendItem) ([]AppendResult, error)

	// SyncMessages returns the messages of conv with seq > afterSeq in
	// ascending order, at most limit of them (0 means DefaultSyncLimit, more
	// than MaxSyncLimit is cut to MaxSyncLimit). An unknown conversation is
	// errcode.ConvNotFound; a malformed id or negative argument is
	// errcode.BadField.
	SyncMessages(ctx context.Context, conv string, afterSeq int64, limit int) (SyncResult, error)

	// ListConversations returns uid's conversations, the most recently
	// updated first; limit 0 means DefaultConvLimit, more than MaxConvLimit
	// is cut to MaxConvLimit.
	ListConversations(ctx context.Context, uid string, limit int) ([]Conversation, error)

	// UpsertUsers creates the users that do not exist yet (existing ones are
	// left unchanged) and returns how many were created. A malformed uid or
	// name rejects the whole call with errcode.BadField.
	UpsertUsers(ctx context.Context, users []User) (int, error)

	// GetUsers returns those of uids that exist, in the order asked.
	GetUsers(ctx context.Context, uids []string) ([]User, error)

	// GetMessage finds a message by its sender's client message id; ok is
	// false when there is none. It reads the primary, so a message whose
	// append has returned is found.
	GetMessage(ctx context.Context, conv, sender, clientMsgID string) (m Message, ok bool, err error)

	// UpdateCursors raises the delivered and read cursors of (uid, conv)
	// pairs: each value only grows, and is cut to the conversation's
	// last_seq. A pair with no conversation-list row (the user is not in
	// the conversation) is ignored. It returns the cursors after the
	// update, one per input (zeros for ignored ones).
	UpdateCursors(ctx context.Context, ups []CursorUpdate) ([]CursorUpdate, error)

	// UserConversations returns the conversation ids each user is in (one
	// to one conversations with a list row, groups the user is a member of,
	// dissolved ones included), for the inbox cursor.
	UserConversations(ctx context.Context, uids []string) (map[string][]string, error)

	// LastSeqs returns the last_seq of each conversation that exists.
	LastSeqs(ctx context.Context, convs []string) (map[string]int64, error)

	// Groups (groups.go).
	CreateGroup(ctx context.Context, g Group, members []string) (Group, error)
	AddGroupMembers(ctx context.Context, groupID string, uids []string, atMs int64) (int, Group, error)
	RemoveGroupMembers(ctx context.Context, groupID string, uids []string) (int, Group, error)
	DissolveGroup(ctx context.Context, groupID string, atMs int64) error
	GetGroup(ctx context.Context, groupID string) (Group, error)
	ListGroupMembers(ctx context.Context, groupID, afterUID string, limit int) ([]GroupMember, bool, error)
	ListUserGroups(ctx context.Context, uid string) ([]Group, error)
	// UserGroupIDs returns, per user, the ids of the groups the user is a
	// member of that are not dissolved: the groups whose route sets carry
	// the user's routes.
	UserGroupIDs(ctx context.Context, uids []string) (map[string][]string, error)
	// MembersAmong returns those of uids that are members of the group now.
	MembersAmong(ctx context.Context, groupID string, uids []string) ([]string, error)

	// Close releases the database handles.
	Close() error
}

// Migrator is implemented by stores with a versioned schema.
type Migrator interface {
	// Migrate applies every migration the database lacks.
	Migrate(ctx context.Context) error
	// SchemaVersion returns the database's schema version (0 for an empty
	// database) and the newest version this binary knows.
	SchemaVersion(ctx context.Context) (current, latest int, err error)
}

// ErrNoDatabase is returned by a read-only open (or an open that may not
// create the database) when the database does not exist.
var ErrNoDatabase = errors.New("database does not exist")

// Limits of the API.
const (
	DefaultMaxBody   = 64 << 10
	MaxMaxBody       = 16<<20 - 1 // a MySQL MEDIUMBLOB
	MaxClientMsgID   = 64
	MaxContentType   = 64
	MaxUserName      = 255 // characters
	DefaultSyncLimit = 50
	MaxSyncLimit     = 200
	DefaultConvLimit = 100
	MaxConvLimit     = 1000
	// MaxGroupName is the longest group name, in characters.
	MaxGroupName = 255
	// DefaultMaxGroupMembers is the default of Options.MaxGroupMembers.
	DefaultMaxGroupMembers = 100_000
	// DefaultMemberLimit and MaxMemberLimit bound a ListGroupMembers page.
	DefaultMemberLimit = 100
	MaxMemberLimit     = 1000
	// MaxGroupChange is the most users one CreateGroup, AddGroupMembers or
	// RemoveGroupMembers call may name.
	MaxGroupChange = 1000
)

// Roles of group members.
const (
	RoleOwner  = "owner"
	RoleMember = "member"
)

// Options are the settings both implementations share.
type Options struct {
	// MaxBody is the largest message body in bytes; 0 means DefaultMaxBody.
	MaxBody int
	// Tables is the number of tables of each kind (messages, conversations,
	// user_conversations) per database; 0 means 1. See Layout.
	Tables int
	// GroupCommit tunes the batching of appends.
	GroupCommit GroupCommit
	// IndexCache is how many conversation-list rows the process remembers
	// as written (per generation, see genset); 0 means
	// DefaultIndexCache, a negative number turns the cache off.
	IndexCache int
	// MaxGroupMembers is the most members a group may have; 0 means
	// DefaultMaxGroupMembers.
	MaxGroupMembers int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxBody < 0 || o.MaxBody > MaxMaxBody {
		return o, errors.New("store: max body must be between 1 and 16 MiB-1")
	}
	if o.Tables == 0 {
		o.Tables = 1
	}
	if o.IndexCache == 0 {
		o.IndexCache = DefaultIndexCache
	}
	if o.MaxGroupMembers == 0 {
		o.MaxGroupMembers = DefaultMaxGroupMembers
	}
	if o.MaxGroupMembers < 1 {
		return o, errors.New("store: max group members must be positive")
	}
	g := o.GroupCommit
	if g.MaxItems < 0 || g.Writers < 0 || g.TxTimeout < 0 || g.MaxWait < 0 || g.MaxWait > MaxGroupWait {
		return o, fmt.Errorf("store: group commit settings out of range: %+v", g)
	}
	return o, nil
}

// AppendItem is one message to store.
type AppendItem struct {
	ConvID      string
	Sender      string
	Recipient   string // the other user of a one-to-one conversation; empty in a group
	ClientMsgID string
	ContentType string
	Body        string
	CreatedAtMs int64 // 0 means now
	// RecallSeq > 0 makes the item a recall of that message of the same
	// conversation (see AppendMessages); RecallWindowMs is how old the
	// message may be, measured from CreatedAtMs.
	RecallSeq      int64
	RecallWindowMs int64
	// ByOperator makes a recall the operator's (moderation, logic's Recall
	// RPC): Sender names the recalled message's sender, and neither the
	// sender check, the window nor group membership applies; the sender's
	// cursors are not raised.
	ByOperator bool
}

// AppendResult answers one AppendItem.
type AppendResult struct {
	Seq          int64
	Duplicate    bool
	CreatedAtMs  int64
	ErrorCode    int32 // an errcode code when the item was rejected, else 0
	ErrorMessage string
}

// Message is a stored message.
type Message struct {
	ConvID      string
	Seq         int64
	Sender      string
	Recipient   string
	ClientMsgID string
	ContentType string
	Body        string // empty once recalled
	CreatedAtMs int64
	Recalled    bool
	RefSeq      int64 // for a recall event, the seq it recalls
}

// SyncResult is a page of a conversation.
type SyncResult struct {
	Messages []Message
	HasMore  bool
	LastSeq  int64
}

// Conversation is a conversation as one user sees it.
type Conversation struct {
	ConvID      string
	Kind        string // ids.KindP2P or ids.KindGroup
	Peer        string // the other user of a one-to-one conversation
	LastSeq     int64
	UpdatedAtMs int64 // created_at_ms of its newest message (a group's creation time before its first)
	// The user's cursors, and last_seq - read_seq (never negative).
	ReadSeq      int64
	DeliveredSeq int64
	Unread       int64
	Name         string // a group's name
}

// CursorUpdate is the delivered and read cursors of one user in one
// conversation.
type CursorUpdate struct {
	UID          string
	ConvID       string
	DeliveredSeq int64
	ReadSeq      int64
}

// Group describes a group. Its conversation id is "g:" + ID.
type Group struct {
	ID            string
	Name          string
	Owner         string
	CreatedAtMs   int64 // 0 on input means now
	DissolvedAtMs int64 // 0 while the group is active
	MemberCount   int
}

// GroupMember is one member of a group.
type GroupMember struct {
	UID        string
	Role       string // RoleOwner or RoleMember
	JoinedAtMs int64
}

// User is a user record.
type User struct {
	UID         string
	Name        string
	CreatedAtMs int64 // 0 on input means now
}

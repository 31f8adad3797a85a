// The logic service: the business core. Gateways call Connect, Disconnect,
// Sync and Conversations on behalf of connected users; app backends call
// IssueToken and the user calls, which need the admin secret.
namespace go logic
include "common.thrift"

struct IssueTokenReq {
    1: string admin_secret
    2: string uid
    3: string device
    // Lifetime of the token; 0 means the server default.
    4: i64 ttl_seconds
    // Create the user if it does not exist yet.
    5: bool create_user = true
}

struct IssueTokenResp {
    1: string token
    2: i64 expires_at_unix
}

struct CreateUsersReq {
    1: string admin_secret
    2: list<common.User> users
}

struct CreateUsersResp {
    1: i32 created
}

// One connection held by a gateway.
struct ConnInfo {
    1: string uid
    2: string device
    3: i64 conn_id
}

// Connect registers (or refreshes) routes; gateways call it when users
// connect and again periodically, so routes lost from Redis come back.
struct ConnectReq {
    1: string gateway_id
    2: list<ConnInfo> conns
    // A periodic re-registration of connections already registered: it
    // refreshes routes and never applies the login policy.
    3: bool refresh
    // The gateway closes the connections listed in ConnectResp.refused
    // itself; logic then sends them no kick record (gateways from before
    // refused existed leave it false and get the record).
    4: bool closes_refused
}

// A new connection of a Connect call that the login policy refused
// because a later connection of the same call took its place (the same
// device id, or the same single-login device kind). Logic stores no route
// for it; the gateway closes it with the kick frame and close code a kick
// record would carry, without opening it first.
struct RefusedConn {
    1: i64 conn_id
    // "replaced" or "same_device", as in the kick frame.
    2: string reason
    // The device id of the connection that took its place.
    3: string device
}

struct ConnectResp {
    // Only for a Connect that is not a refresh.
    1: list<RefusedConn> refused
}

struct DisconnectReq {
    1: string gateway_id
    2: list<ConnInfo> conns
}

struct DisconnectResp {
}

// Sync returns a conversation's messages with seq > after_seq, oldest first.
struct SyncReq {
    1: string uid
    2: string conv_id
    3: i64 after_seq
    4: i32 limit
}

struct SyncResp {
    1: list<common.Message> messages
    2: bool has_more
    3: i64 last_seq
}

struct ConversationsReq {
    1: string uid
    2: i32 limit
}

struct ConversationsResp {
    1: list<common.Conversation> items
}

// Send delivers a message on behalf of a user (system messages, bots) with
// the same guarantees as a client send: it goes through the upstream topic,
// and the reply comes once the message is stored.
struct SendReq {
    1: string admin_secret
    2: string from
    // Exactly one of to (a user) and group_id.
    3: string to
    4: string group_id
    5: string client_msg_id
    6: string content_type
    7: string body
    // How long to wait for the message to be stored; 0 means 5 s, at most
    // 30 s.
    8: i32 wait_ms
}

struct SendResp {
    1: string conv_id
    2: i64 seq
    3: i64 created_at_ms
    4: bool duplicate
}

// Recall takes a message back on the operator's behalf (moderation, an
// abuse report): any message of any conversation, at any age. Like a
// sender's recall, it adds a recall event (content type "gochat.recall",
// ref_seq = seq) to the conversation, pushed and synced as usual, whose
// body is the reason, and the message is served recalled from then on.
// It goes through the upstream topic, so it is ordered with the
// conversation's other messages; the reply comes once it is stored.
// Calling it again for the same message returns the first answer.
struct RecallReq {
    // The admin secret, or logic's -recall-secret, which allows this call
    // only.
    1: string admin_secret
    2: string conv_id
    3: i64 seq
    // Shown to clients as the recall event's body; 1-256 bytes of UTF-8.
    4: string reason
    // How long to wait for the recall to be stored; 0 means 5 s, at most
    // 30 s.
    5: i32 wait_ms
}

struct RecallResp {
    // The recall event's seq and time (those of the first call when
    // duplicate is true).
    1: i64 seq
    2: i64 created_at_ms
    3: bool duplicate
    // The sender had recalled the message already: nothing was done and
    // seq is 0.
    4: bool already_recalled
}

// ClientCall carries a client's request frame that is answered by logic
// (group operations and the like): the gateway passes the JSON frame and
// writes back the JSON reply.
struct ClientCallReq {
    1: string uid
    2: string device
    3: string gateway_id
    4: i64 conn_id
    5: binary frame
}

struct ClientCallResp {
    1: binary frame
}

// Cursors returns users' inbox cursors (see dataproxy GetUserCursors), for
// gateways to put in heartbeat replies.
struct CursorsReq {
    1: list<string> uids
}

struct CursorsResp {
    1: map<string, i64> cursors
}

struct CreateGroupReq {
    1: string admin_secret
    // Empty: logic picks an id.
    2: string group_id
    3: string name
    4: string owner
    5: list<string> members
}

struct GroupResp {
    1: common.Group group
}

struct GroupMembersReq {
    1: string admin_secret
    2: string group_id
    3: list<string> uids
}

struct GroupMembersResp {
    1: i32 changed
    2: common.Group group
}

struct GroupReq {
    1: string admin_secret
    2: string group_id
}

struct ListGroupMembersReq {
    1: string admin_secret
    2: string group_id
    3: string after_uid
    4: i32 limit
}

struct ListGroupMembersResp {
    1: list<common.GroupMember> members
    2: bool has_more
}

service Logic {
    IssueTokenResp IssueToken(1: IssueTokenReq req)
    CreateUsersResp CreateUsers(1: CreateUsersReq req)
    ConnectResp Connect(1: ConnectReq req)
    DisconnectResp Disconnect(1: DisconnectReq req)
    SyncResp Sync(1: SyncReq req)
    ConversationsResp Conversations(1: ConversationsReq req)
    SendResp Send(1: SendReq req)
    RecallResp Recall(1: RecallReq req)
    ClientCallResp ClientCall(1: ClientCallReq req)
    CursorsResp Cursors(1: CursorsReq req)
    GroupResp CreateGroup(1: CreateGroupReq req)
    GroupMembersResp AddGroupMembers(1: GroupMembersReq req)
    GroupMembersResp RemoveGroupMembers(1: GroupMembersReq req)
    GroupResp DissolveGroup(1: GroupReq req)
    GroupResp GetGroup(1: GroupReq req)
    ListGroupMembersResp ListGroupMembers(1: ListGroupMembersReq req)
}

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
}

struct ConnectResp {
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

service Logic {
    IssueTokenResp IssueToken(1: IssueTokenReq req)
    CreateUsersResp CreateUsers(1: CreateUsersReq req)
    ConnectResp Connect(1: ConnectReq req)
    DisconnectResp Disconnect(1: DisconnectReq req)
    SyncResp Sync(1: SyncReq req)
    ConversationsResp Conversations(1: ConversationsReq req)
}

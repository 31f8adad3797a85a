// The dataproxy service: the only code that reads or writes MySQL and Redis.
namespace go dataproxy
include "common.thrift"

// One message to persist. The store assigns the sequence number.
struct AppendItem {
    1: string conv_id
    2: string sender
    3: string recipient
    4: string client_msg_id
    5: string content_type
    6: string body
    7: i64 created_at_ms
    // When > 0 this item recalls the message with that seq: the store
    // checks it exists, has the same sender, is not recalled yet and was
    // created no earlier than created_at_ms - recall_window_ms, marks it
    // recalled and stores this item as the recall event, in one
    // transaction. Errors: 2003 wrong sender or window passed, 1003 no such
    // message or already recalled.
    8: i64 recall_seq
    9: i64 recall_window_ms
    // A recall made by the operator (the moderation job, logic's Recall
    // RPC) rather than by the sender: sender is the recalled message's
    // sender and client_msg_id "gochat.recall:<recall_seq>" (else 1003),
    // and neither the window nor group membership applies; the sender's
    // cursors are not raised (they did not write it), and body may carry
    // the reason shown to clients.
    10: bool by_operator
}

struct AppendResult {
    1: i64 seq
    // True when (conv_id, sender, client_msg_id) was stored before; seq and
    // created_at_ms are then those of the original message.
    2: bool duplicate
    3: i64 created_at_ms
    // Non-zero when this item was rejected and not stored (an errcode code,
    // for example 1003 for a malformed id or 1004 for an oversized body);
    // the other items of the call are unaffected.
    4: i32 error_code
    5: string error_message
}

// MAX_BATCH is the most items, users, uids or routes one call may carry;
// dataproxy refuses a longer list with BadRequest. Callers that batch
// (logic's -max-batch) stay within it.
const i32 MAX_BATCH = 1000

// AppendMessages stores the valid items in order in one transaction per
// database, all or none of a database's items (a call spanning databases
// that fails may have stored some: retry it with the same client message
// ids, and those come back as duplicates); results[i] answers items[i]. A sender has read what they
// wrote: each stored message also raises its sender's delivered and read
// cursors in that conversation to its seq (in the same transaction when
// the sender's list row is in the conversation's database, just after it
// otherwise).
//
// A caller that will push the stored messages can have the routes of the
// users it pushes to read with the same call: route_uids are looked up
// while the items are stored (as GetRoutes does), which saves a round trip
// per batch.
struct AppendMessagesReq {
    1: list<AppendItem> items
    2: list<string> route_uids
}

struct AppendMessagesResp {
    1: list<AppendResult> results
    // Every route of every user in route_uids that has one, when
    // routes_read is true. It is false when no route_uids were given, more
    // than a call may carry, or their lookup failed: the items' results
    // stand all the same (they are stored), and the caller asks GetRoutes
    // itself. Retrying the append instead would turn the stored items into
    // duplicates.
    2: list<common.Route> routes
    3: bool routes_read
}

struct SyncMessagesReq {
    1: string conv_id
    2: i64 after_seq
    3: i32 limit
}

struct SyncMessagesResp {
    1: list<common.Message> messages
    2: bool has_more
    3: i64 last_seq
}

struct ListConversationsReq {
    1: string uid
    2: i32 limit
}

struct ListConversationsResp {
    1: list<common.Conversation> items
}

struct UpsertUsersReq {
    1: list<common.User> users
}

struct UpsertUsersResp {
    1: i32 created
}

struct GetUsersReq {
    1: list<string> uids
}

// Only the users that exist are returned.
struct GetUsersResp {
    1: list<common.User> users
}

struct SetRoutesReq {
    1: list<common.Route> routes
    // How long the routes live unless set again; 0 means the server default.
    2: i32 ttl_seconds
}

struct SetRoutesResp {
}

// DelRoutes removes a route only if it still names the same gateway and
// connection, so a newer connection of the same device is left alone.
struct DelRoutesReq {
    1: list<common.Route> routes
}

struct DelRoutesResp {
}

struct GetRoutesReq {
    1: list<string> uids
}

struct GetRoutesResp {
    // Every route of every requested user that has one.
    1: list<common.Route> routes
}

// GetMessage finds a message by its sender's client message id.
struct GetMessageReq {
    1: string conv_id
    2: string sender
    3: string client_msg_id
}

struct GetMessageResp {
    1: bool found
    2: common.Message message
}

// Client cursors: each value only ever grows (a lower value is ignored).
struct CursorUpdate {
    1: string uid
    2: string conv_id
    3: i64 delivered_seq
    4: i64 read_seq
}

struct UpdateCursorsReq {
    1: list<CursorUpdate> updates
}

struct UpdateCursorsResp {
    // The cursors after the update, one per request item.
    1: list<CursorUpdate> cursors
}

// A user's inbox cursor is the sum of last_seq over the conversations the
// user is in. A client that sums its own highest seq per conversation and
// finds less has missed something and syncs.
struct GetUserCursorsReq {
    1: list<string> uids
}

struct GetUserCursorsResp {
    1: map<string, i64> cursors
}

struct CreateGroupReq {
    1: string group_id
    2: string name
    3: string owner
    // Members besides the owner.
    4: list<string> members
    5: i64 created_at_ms
}

struct CreateGroupResp {
    1: common.Group group
}

struct GroupMembersReq {
    1: string group_id
    2: list<string> uids
    3: i64 at_ms
}

struct GroupMembersResp {
    // How many were added (or removed); members already in (or not in)
    // are skipped.
    1: i32 changed
    2: common.Group group
}

struct GetGroupReq {
    1: string group_id
}

struct GetGroupResp {
    1: common.Group group
}

struct ListGroupMembersReq {
    1: string group_id
    // Page after this uid (empty: from the start), in uid order.
    2: string after_uid
    3: i32 limit
}

struct ListGroupMembersResp {
    1: list<common.GroupMember> members
    2: bool has_more
}

struct DissolveGroupReq {
    1: string group_id
    2: i64 at_ms
}

struct DissolveGroupResp {
}

struct ListUserGroupsReq {
    1: string uid
}

struct ListUserGroupsResp {
    1: list<common.Group> groups
}

// The online routes of a group's members, from the group's route set: one
// lookup per message whatever the group's size.
struct GetGroupRoutesReq {
    1: string group_id
}

struct GetGroupRoutesResp {
    1: list<common.Route> routes
}

service DataProxy {
    AppendMessagesResp AppendMessages(1: AppendMessagesReq req)
    SyncMessagesResp SyncMessages(1: SyncMessagesReq req)
    ListConversationsResp ListConversations(1: ListConversationsReq req)
    UpsertUsersResp UpsertUsers(1: UpsertUsersReq req)
    GetUsersResp GetUsers(1: GetUsersReq req)
    SetRoutesResp SetRoutes(1: SetRoutesReq req)
    DelRoutesResp DelRoutes(1: DelRoutesReq req)
    GetRoutesResp GetRoutes(1: GetRoutesReq req)
    GetMessageResp GetMessage(1: GetMessageReq req)
    UpdateCursorsResp UpdateCursors(1: UpdateCursorsReq req)
    GetUserCursorsResp GetUserCursors(1: GetUserCursorsReq req)
    CreateGroupResp CreateGroup(1: CreateGroupReq req)
    GroupMembersResp AddGroupMembers(1: GroupMembersReq req)
    GroupMembersResp RemoveGroupMembers(1: GroupMembersReq req)
    GetGroupResp GetGroup(1: GetGroupReq req)
    ListGroupMembersResp ListGroupMembers(1: ListGroupMembersReq req)
    DissolveGroupResp DissolveGroup(1: DissolveGroupReq req)
    ListUserGroupsResp ListUserGroups(1: ListUserGroupsReq req)
    GetGroupRoutesResp GetGroupRoutes(1: GetGroupRoutesReq req)
}

// Types shared by the logic and dataproxy APIs and by the Kafka records.
namespace go common

// A stored chat message. (conv_id, seq) identifies it for ever.
struct Message {
    1: string conv_id
    2: i64 seq
    3: string sender
    // The other user of a one-to-one conversation; empty in a group.
    4: string recipient
    5: string client_msg_id
    6: string content_type
    7: string body
    8: i64 created_at_ms
    // The sender recalled this message; its body is no longer served.
    9: bool recalled
    // For event messages (content type "gochat.recall"): the seq they are about.
    10: i64 ref_seq
}

// Where one device of a user is connected.
struct Route {
    1: string uid
    2: string device
    3: string gateway_id
    4: i64 conn_id
}

struct User {
    1: string uid
    2: string name
    3: i64 created_at_ms
}

// A conversation as one user sees it.
struct Conversation {
    1: string conv_id
    // "p2p" or "group".
    2: string kind
    // The other user of a one-to-one conversation.
    3: string peer
    4: i64 last_seq
    5: i64 updated_at_ms
    // What this user has marked read / acknowledged as received.
    6: i64 read_seq
    7: i64 delivered_seq
    // last_seq - read_seq. A user's own sends move their read_seq, so
    // this counts what others wrote since the user last read or wrote.
    8: i64 unread
    // The group's name, for group conversations.
    9: string name
}

struct Group {
    1: string group_id
    2: string name
    3: string owner
    4: i64 created_at_ms
    5: i32 member_count
    6: bool dissolved
}

struct GroupMember {
    1: string uid
    // "owner" or "member".
    2: string role
    3: i64 joined_at_ms
}

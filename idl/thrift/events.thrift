// Records carried by Kafka between services, encoded with Thrift binary.
//   up          gateway -> logic, key = conv_id
//   down.<gw>   logic -> one gateway
//   task        logic -> task
namespace go events
include "common.thrift"

enum UpKind {
    // A message: to a user (to set) or a group (conv_id "g:<group>").
    SEND = 1
    // Cursors: the sender has read / received conv up to seq.
    READ = 2
    DELIVERED = 3
    // The sender is typing in conv (not stored).
    TYPING = 4
    // The sender recalls its message seq of conv.
    RECALL = 5
}

// A client operation, produced by the gateway that holds the sender.
struct UpRecord {
    1: UpKind kind
    2: string sender
    3: string device
    4: string gateway_id
    5: i64 conn_id
    6: string client_msg_id
    7: string to
    8: string conv_id
    9: string content_type
    10: string body
    11: i64 received_at_ms
    12: i64 seq
    // RECALL made by the operator (logic's Recall RPC, used by the
    // moderation job): sender is the recalled message's sender, body the
    // reason shown to clients. Never set from a client frame.
    13: bool by_operator
}

// A connection a downstream record is for; the gateway checks the uid so a
// stale route can never reach another user's connection.
struct Target {
    1: string uid
    2: i64 conn_id
}

enum DownKind {
    PUSH = 1
    ACK = 2
    ERROR = 3
    // A complete client frame, encoded by logic, written as it is.
    FRAME = 4
    // Several records for one gateway and one partition of its topic, in
    // order (records). Logic sends it only to gateways that announce
    // "batches" in their etcd registration.
    BATCH = 5
}

struct Ack {
    1: string client_msg_id
    2: string conv_id
    3: i64 seq
    4: i64 created_at_ms
    5: bool duplicate
}

struct ErrorEvent {
    1: i32 code
    2: string message
    3: string client_msg_id
}

// One record per gateway per event; the gateway encodes the client frame
// once and writes it to every target. Records of one gateway may travel
// together in a BATCH record.
struct DownRecord {
    1: DownKind kind
    2: list<Target> targets
    3: optional common.Message message
    4: optional Ack ack
    5: optional ErrorEvent error
    // FRAME: the JSON text frame to write to every target.
    6: binary frame
    // FRAME: when non-zero, close each target with this WebSocket close
    // code and reason after writing the frame (a kick).
    7: i32 close_code
    8: string close_reason
    // BATCH: the records, each a Thrift-binary DownRecord (never a BATCH).
    9: list<binary> records
}

enum TaskKind {
    OFFLINE_PUSH = 1
    // A stored message (or recall event) for the task service's archive
    // job; emitted only when logic runs with -archive.
    ARCHIVE = 2
    // A newly stored message for the task service's moderation job, which
    // has it recalled (logic's Recall RPC) when the verdict says so;
    // emitted only when logic runs with -moderate.
    MODERATE = 3
}

struct OfflinePush {
    1: string uid
    2: string conv_id
    3: i64 seq
    4: string sender
    5: string content_type
    6: string preview
    7: i64 created_at_ms
}

struct TaskRecord {
    1: TaskKind kind
    2: optional OfflinePush offline_push
    // ARCHIVE: the message as stored.
    3: optional common.Message archive
    // MODERATE: the message as stored.
    4: optional common.Message moderate
    // Set on records sent to the dead-letter topic.
    10: i32 attempts
    11: string last_error
}

// The kvstore wire protocol: frames, messages and their pure codec.
//
// Everything here is code over bytes: no sockets, no Asio, no allocation per byte. The format is
// documented in docs/protocol.md; the constants below are the single source of truth that both
// the encoder and the decoder use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/item.hpp"

namespace kv::proto {

// ---- Frame layout -------------------------------------------------------------------------------
// | length: u32 BE | type: u8 | request_id: u32 BE | payload: length - 5 bytes |
// `length` counts the bytes after the length field itself (type + request id + payload).
inline constexpr std::size_t kLengthSize = 4;
inline constexpr std::size_t kHeaderSize = 9;                    // length + type + request id
inline constexpr std::size_t kMinLength = 5;                     // type + request id, empty payload
inline constexpr std::size_t kMaxFrameLength = 4 * 1024 * 1024;  // bound on `length`

inline constexpr std::size_t kMaxTitleBytes = 1024;
inline constexpr std::size_t kMaxIdBytes = 32;
inline constexpr std::size_t kMaxNameBytes = 32;
inline constexpr std::size_t kMaxMessageBytes = 4096;  // error texts
inline constexpr std::uint64_t kMaxFetchLimit = 10000;
// Replies that carry many items stop adding them past this many encoded bytes, well inside
// kMaxFrameLength: FETCH, LIST pages and the syncer's APPLY batches.
inline constexpr std::size_t kBatchBytes = 1024 * 1024;
inline constexpr std::uint64_t kDefaultListLimit = 1000;
inline constexpr std::size_t kMaxSecretBytes = 256;
inline constexpr std::size_t kMaxSessionMarks = 64;     // per WAIT and per APPLY
inline constexpr std::uint64_t kMaxWaitMs = 60 * 1000;  // WAIT's timeout is clamped here

// APPLY's flags byte.
inline constexpr std::uint8_t kApplyReset = 0x01;
inline constexpr std::uint8_t kApplyRebirth = 0x02;
inline constexpr std::uint8_t kApplyAdopt = 0x04;
inline constexpr std::uint8_t kApplyMarksCurrent = 0x08;
inline constexpr std::uint8_t kApplyHold = 0x10;

// A response carries the request's type with this bit set, or kError.
inline constexpr std::uint8_t kResponseBit = 0x80;

enum class MsgType : std::uint8_t {
  kPing = 0x01,
  kStatus = 0x02,
  kAuth = 0x03,
  kCreate = 0x10,
  kGet = 0x11,
  kList = 0x12,
  kUpdate = 0x13,
  kDelete = 0x14,
  kWait = 0x15,
  kFetch = 0x20,
  kApply = 0x21,
  kDump = 0x22,
  kError = 0xFF,
};

// Error codes carried by kError frames. Stable: they are part of the wire format.
enum class ErrorCode : std::uint16_t {
  kBadFrame = 1,         // the frame or its payload could not be decoded
  kUnknownType = 2,      // a message type this node does not know
  kNotFound = 3,         // no item with that id
  kInvalidArgument = 4,  // e.g. an empty or oversized title
  kDeleted = 5,          // the item was deleted; deletes are final
  kFrameTooLarge = 6,    // length prefix above kMaxFrameLength
  kStorage = 7,          // the store could not commit (disk full, I/O error)
  kUnavailable = 8,      // the node is shutting down or overloaded
  kUnauthenticated = 9,  // the operation needs the cluster secret (AUTH), or it was wrong
  kStale = 10,           // an APPLY that does not continue from this node's applied stamp, or
                         // comes from another syncer log: from a syncer that is gone, or late
};

std::string_view to_string(ErrorCode code);
std::string_view to_string(MsgType type);  // "ping", "create", ...: metrics labels

// An item's flags byte, the same on the wire (Writer::item) and on disk (the node's records).
inline constexpr std::uint8_t kItemCompleted = 0x01;
inline constexpr std::uint8_t kItemDeleted = 0x02;

// ---- Frame decoding -----------------------------------------------------------------------------
struct FrameView {
  std::uint8_t type = 0;
  std::uint32_t request_id = 0;
  std::span<const std::uint8_t> payload;
  std::size_t size = 0;  // bytes of the whole frame, header included
};

enum class DecodeStatus { kNeedMore, kFrame, kError };

struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  FrameView frame;                         // valid when status == kFrame
  ErrorCode error = ErrorCode::kBadFrame;  // valid when status == kError
};

// Looks at the start of `in` and reports whether it holds a whole frame. Never reads past `in`,
// never allocates. A length below kMinLength or above kMaxFrameLength is an error: the stream
// cannot be resynchronised after it and the connection must be closed.
DecodeResult decode_frame(std::span<const std::uint8_t> in);

// Appends a frame header followed by `payload` to `out`.
void append_frame(std::string& out, std::uint8_t type, std::uint32_t request_id,
                  std::string_view payload);

// ---- Payload primitives -------------------------------------------------------------------------
// Integers in payloads are unsigned LEB128 varints (at most 10 bytes); strings are a varint byte
// count followed by the bytes; flags are one byte.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v);
  void varint(std::uint64_t v);
  void str(std::string_view s);
  void item(const Item& item);

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  std::uint8_t u8();
  std::uint16_t u16();
  std::uint64_t varint();
  std::string str(std::size_t max_bytes);
  Item item();
  // True when every read so far succeeded.
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  // True when every read succeeded and nothing is left over.
  bool done() const { return ok_ && at_end(); }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// ---- Messages -----------------------------------------------------------------------------------
namespace msg {
struct Ping {
  friend bool operator==(const Ping&, const Ping&) = default;
};
// The node's state. A syncer sends its life (a number that grows with every start of kvsync):
// the node then refuses APPLYs of any older life from now on, so that one still in a socket of a
// syncer that is gone cannot change what the new one was just told (docs/sync.md, "Syncer
// lives"). 0: a plain question (kvcli).
struct Status {
  std::uint64_t syncer_life = 0;
  friend bool operator==(const Status&, const Status&) = default;
};
// Presents the cluster secret for this connection (docs/security.md).
struct Auth {
  std::string secret;
  friend bool operator==(const Auth&, const Auth&) = default;
};
struct Create {
  std::string title;
  friend bool operator==(const Create&, const Create&) = default;
};
struct Get {
  std::string id;
  friend bool operator==(const Get&, const Get&) = default;
};
// Live items after `after` (exclusive; empty: from the first), in id order, at most `limit`
// (0: the default) and about kBatchBytes.
struct List {
  std::string after;
  std::uint64_t limit = 0;
  friend bool operator==(const List&, const List&) = default;
};
struct Update {
  std::string id;
  std::optional<bool> completed;
  std::optional<std::string> title;
  friend bool operator==(const Update&, const Update&) = default;
};
struct Delete {
  std::string id;
  friend bool operator==(const Delete&, const Delete&) = default;
};
// Read-your-writes: answers once this node has every change named in `want` (its own, or
// applied from the syncer), or after `timeout_ms` (clamped to kMaxWaitMs), whichever is first.
struct Wait {
  std::uint64_t timeout_ms = 0;
  std::vector<SessionMark> want;
  friend bool operator==(const Wait&, const Wait&) = default;
};
// Sync: the node's durable local changes with seq > after_seq, oldest first, at most `limit`.
struct Fetch {
  std::uint64_t after_seq = 0;
  std::uint64_t limit = 0;
  friend bool operator==(const Fetch&, const Fetch&) = default;
};
// Sync: stamped changes for the node to apply (docs/sync.md, "Applying a stamped change").
// `after_stamp` is the applied stamp this batch continues from: the node refuses (kStale) a batch
// that does not continue from its own, or that comes from another syncer log (`log_id`) unless
// `adopt` is set. `upto_stamp` is the highest stamp the batch covers (entries superseded before
// delivery are left out); `synced_upto` tells the node that all its local changes with
// seq <= synced_upto are already in the syncer's log. `id_floor` is the largest id number in the
// syncer's log: the node's next ids go above it. `purge_upto`: every node has applied every
// stamp up to here, so tombstones stamped at or below it may go (docs/sync.md, "Compaction").
// `reset`: the node forgets every item without an unsynced local change before applying, and
// this batch and the ones after it resend the whole log (a full resync). `rebirth` (with reset):
// the node's data directory is an older copy of itself; it takes a new incarnation and counts
// every local change it holds as synced (they are in the log, or older than what is).
struct Apply {
  std::uint64_t upto_stamp = 0;
  std::uint64_t synced_upto = 0;
  std::uint64_t id_floor = 0;
  std::uint64_t purge_upto = 0;
  bool reset = false;
  std::vector<StampedChange> changes;
  std::uint64_t stamp_high = 0;  // the syncer's latest stamp (how far behind the node is)
  // For every node the log knows, how far its local changes are in the stamps up to
  // upto_stamp (at most kMaxSessionMarks). The node keeps them: should the syncer's log be lost,
  // they tell a new one which changes it need not fetch again (docs/sync.md, "A lost log").
  // With `marks_current` (the batch brings the node up to the log's latest stamp) they are
  // also session marks: the node now holds every node's changes up to them (read-your-writes).
  std::vector<SessionMark> marks;
  bool marks_current = false;
  std::uint64_t after_stamp = 0;
  std::uint64_t log_id = 0;  // the syncer log that stamped these changes
  // The node's incarnation the syncer means (0: any): a batch for another life of its data
  // directory (a rebirth that already happened, delivered again) is refused (kStale).
  std::uint64_t incarnation = 0;
  bool rebirth = false;
  bool adopt = false;  // the node takes this log as its own (after the log was rebuilt)
  bool hold = false;   // the node keeps its write fence (a rebuild's claim: no id floor yet)
  // The life of the kvsync that sent it: refused (kStale) once a later life claimed the node.
  std::uint64_t syncer_life = 0;
  friend bool operator==(const Apply&, const Apply&) = default;
};

// Sync: what a syncer rebuilding a lost log needs of the node (docs/sync.md, "A lost log"):
// its stamped values (tombstones included; not the items holding an unsynced local change),
// in id order after `after` (exclusive), at most `limit` and about kBatchBytes.
struct Dump {
  std::string after;
  std::uint64_t limit = 0;
  friend bool operator==(const Dump&, const Dump&) = default;
};

// Responses.
struct Pong {
  friend bool operator==(const Pong&, const Pong&) = default;
};
struct StatusReply {
  NodeStatus status;
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};
struct ItemReply {
  Item item;
  // A write's change: its sequence number and the node's incarnation, for a session token
  // (both 0 when answering GET).
  std::uint64_t seq = 0;
  std::uint64_t incarnation = 0;
  friend bool operator==(const ItemReply&, const ItemReply&) = default;
};
struct ItemsReply {
  std::vector<Item> items;
  std::string next;  // pass as List::after for the next page; empty when this was the last
  friend bool operator==(const ItemsReply&, const ItemsReply&) = default;
};
struct Changes {
  // The syncer's next cursor: every durable local change up to here is in `changes` or an
  // earlier answer.
  std::uint64_t seq_high = 0;
  std::vector<Change> changes;
  friend bool operator==(const Changes&, const Changes&) = default;
};
struct Dumped {
  std::vector<StampedChange> items;
  std::string next;  // pass as Dump::after for the next page; empty when this was the last
  // The cursors of the log the node follows, as its last APPLY gave them (first page only).
  std::vector<SessionMark> cursors;
  // The node's change sequence when the page was read: its items left out for an unsynced
  // change have that change at or below it.
  std::uint64_t seq = 0;
  friend bool operator==(const Dumped&, const Dumped&) = default;
};
struct Applied {
  std::uint64_t applied_stamp = 0;
  std::uint64_t synced_upto = 0;
  std::uint64_t changed = 0;      // how many items the batch changed
  std::uint64_t incarnation = 0;  // the node's, after the batch (a rebirth gives it a new one)
  // Its digest (item_digest of its live items) and unsynced local changes right after the
  // batch: with none unsynced and every stamp applied, the digest equals the log's.
  std::uint64_t digest = 0;
  std::uint64_t unsynced = 0;
  friend bool operator==(const Applied&, const Applied&) = default;
};
struct Waited {
  bool caught_up = false;
  std::vector<SessionMark> have;  // how far this node is, for each node named in the request
  friend bool operator==(const Waited&, const Waited&) = default;
};
struct Error {
  ErrorCode code = ErrorCode::kBadFrame;
  std::string message;
  friend bool operator==(const Error&, const Error&) = default;
};
}  // namespace msg

using Request =
    std::variant<msg::Ping, msg::Status, msg::Auth, msg::Create, msg::Get, msg::List, msg::Update,
                 msg::Delete, msg::Wait, msg::Fetch, msg::Apply, msg::Dump>;
using Response = std::variant<msg::Pong, msg::StatusReply, msg::ItemReply, msg::ItemsReply,
                              msg::Changes, msg::Applied, msg::Waited, msg::Dumped, msg::Error>;

// Appends one whole frame.
void encode_request(std::string& out, std::uint32_t request_id, const Request& req);
// `request_type` is the type of the request being answered (it decides the response type).
void encode_response(std::string& out, std::uint32_t request_id, MsgType request_type,
                     const Response& resp);

// Parse a frame's payload. On failure the result holds msg::Error (kBadFrame / kUnknownType).
std::variant<Request, msg::Error> parse_request(const FrameView& frame);
// `request_type` is what the caller asked; a response of any other type is an error.
std::variant<Response, msg::Error> parse_response(const FrameView& frame, MsgType request_type);

MsgType type_of(const Request& req);

}  // namespace kv::proto

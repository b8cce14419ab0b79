#include "core/protocol.hpp"

#include <type_traits>

namespace kv::proto {

std::string_view to_string(MsgType t) {
  switch (t) {
    case MsgType::kPing:
      return "ping";
    case MsgType::kStatus:
      return "status";
    case MsgType::kAuth:
      return "auth";
    case MsgType::kCreate:
      return "create";
    case MsgType::kGet:
      return "get";
    case MsgType::kList:
      return "list";
    case MsgType::kUpdate:
      return "update";
    case MsgType::kDelete:
      return "delete";
    case MsgType::kWait:
      return "wait";
    case MsgType::kFetch:
      return "fetch";
    case MsgType::kApply:
      return "apply";
    case MsgType::kDump:
      return "dump";
    default:
      return "unknown";
  }
}

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadFrame:
      return "bad_frame";
    case ErrorCode::kUnknownType:
      return "unknown_type";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kDeleted:
      return "deleted";
    case ErrorCode::kFrameTooLarge:
      return "frame_too_large";
    case ErrorCode::kStorage:
      return "storage";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kStale:
      return "stale";
  }
  return "unknown_error";
}

namespace {
std::uint32_t load_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
void store_be32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
constexpr std::uint8_t kFlagHasCompleted = 0x01;  // UPDATE field mask
constexpr std::uint8_t kFlagHasTitle = 0x02;
}  // namespace

DecodeResult decode_frame(std::span<const std::uint8_t> in) {
  DecodeResult r;
  if (in.size() < kLengthSize) return r;
  const std::uint32_t length = load_be32(in.data());
  if (length > kMaxFrameLength) {
    r.status = DecodeStatus::kError;
    r.error = ErrorCode::kFrameTooLarge;
    return r;
  }
  if (length < kMinLength) {
    r.status = DecodeStatus::kError;
    r.error = ErrorCode::kBadFrame;
    return r;
  }
  if (in.size() < kLengthSize + length) return r;
  r.status = DecodeStatus::kFrame;
  r.frame.type = in[4];
  r.frame.request_id = load_be32(in.data() + 5);
  r.frame.payload = in.subspan(kHeaderSize, length - kMinLength);
  r.frame.size = kLengthSize + length;
  return r;
}

void append_frame(std::string& out, std::uint8_t type, std::uint32_t request_id,
                  std::string_view payload) {
  store_be32(out, static_cast<std::uint32_t>(kMinLength + payload.size()));
  out.push_back(static_cast<char>(type));
  store_be32(out, request_id);
  out.append(payload);
}

// ---- Writer / Reader ----------------------------------------------------------------------------
void Writer::u16(std::uint16_t v) {
  out_.push_back(static_cast<char>(v >> 8));
  out_.push_back(static_cast<char>(v));
}

void Writer::varint(std::uint64_t v) {
  while (v >= 0x80) {
    out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out_.push_back(static_cast<char>(v));
}

void Writer::str(std::string_view s) {
  varint(s.size());
  out_.append(s);
}

void Writer::item(const Item& item) {
  str(item.id);
  str(item.title);
  u8((item.completed ? kItemCompleted : 0) | (item.deleted ? kItemDeleted : 0));
  varint(item.version);
}

std::uint8_t Reader::u8() {
  if (!ok_ || pos_ >= in_.size()) {
    ok_ = false;
    return 0;
  }
  return in_[pos_++];
}

std::uint16_t Reader::u16() {
  const std::uint16_t hi = u8();
  const std::uint16_t lo = u8();
  return static_cast<std::uint16_t>((hi << 8) | lo);
}

std::uint64_t Reader::varint() {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const std::uint8_t b = u8();
    if (!ok_) return 0;
    // The tenth byte may only carry the top bit of a 64-bit value.
    if (shift == 63 && b > 1) break;
    v |= std::uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return v;
  }
  ok_ = false;
  return 0;
}

std::string Reader::str(std::size_t max_bytes) {
  const std::uint64_t n = varint();
  if (!ok_ || n > max_bytes || n > in_.size() - pos_) {
    ok_ = false;
    return {};
  }
  std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  return s;
}

Item Reader::item() {
  Item it;
  it.id = str(kMaxIdBytes);
  it.title = str(kMaxTitleBytes);
  const std::uint8_t flags = u8();
  if (flags & ~(kItemCompleted | kItemDeleted)) ok_ = false;
  it.completed = flags & kItemCompleted;
  it.deleted = flags & kItemDeleted;
  it.version = varint();
  return it;
}

// ---- Messages -----------------------------------------------------------------------------------
MsgType type_of(const Request& req) {
  return std::visit(
      [](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, msg::Ping>) return MsgType::kPing;
        if constexpr (std::is_same_v<T, msg::Status>) return MsgType::kStatus;
        if constexpr (std::is_same_v<T, msg::Auth>) return MsgType::kAuth;
        if constexpr (std::is_same_v<T, msg::Create>) return MsgType::kCreate;
        if constexpr (std::is_same_v<T, msg::Get>) return MsgType::kGet;
        if constexpr (std::is_same_v<T, msg::List>) return MsgType::kList;
        if constexpr (std::is_same_v<T, msg::Update>) return MsgType::kUpdate;
        if constexpr (std::is_same_v<T, msg::Delete>) return MsgType::kDelete;
        if constexpr (std::is_same_v<T, msg::Wait>) return MsgType::kWait;
        if constexpr (std::is_same_v<T, msg::Fetch>) return MsgType::kFetch;
        if constexpr (std::is_same_v<T, msg::Apply>) return MsgType::kApply;
        if constexpr (std::is_same_v<T, msg::Dump>) return MsgType::kDump;
      },
      req);
}

namespace {
void write_payload(Writer& w, const msg::Ping&) {}
void write_payload(Writer& w, const msg::Status& m) {
  w.varint(m.syncer_life);
}
void write_payload(Writer& w, const msg::Auth& m) {
  w.str(m.secret);
}
void write_payload(Writer& w, const msg::List& m) {
  w.str(m.after);
  w.varint(m.limit);
}
void write_payload(Writer& w, const msg::Create& m) {
  w.str(m.title);
}
void write_payload(Writer& w, const msg::Get& m) {
  w.str(m.id);
}
void write_payload(Writer& w, const msg::Delete& m) {
  w.str(m.id);
}
void write_payload(Writer& w, const msg::Update& m) {
  w.str(m.id);
  w.u8((m.completed ? kFlagHasCompleted : 0) | (m.title ? kFlagHasTitle : 0));
  if (m.completed) w.u8(*m.completed ? 1 : 0);
  if (m.title) w.str(*m.title);
}
void write_stamped(Writer& w, const std::vector<StampedChange>& changes) {
  w.varint(changes.size());
  for (const auto& c : changes) {
    w.varint(c.stamp);
    w.str(c.origin);
    w.varint(c.origin_seq);
    w.item(c.item);
  }
}
void write_marks(Writer& w, const std::vector<SessionMark>& marks) {
  w.varint(marks.size());
  for (const auto& m : marks) {
    w.str(m.node);
    w.varint(m.incarnation);
    w.varint(m.seq);
  }
}
void write_payload(Writer& w, const msg::Wait& m) {
  w.varint(m.timeout_ms);
  write_marks(w, m.want);
}
void write_payload(Writer& w, const msg::Waited& m) {
  w.u8(m.caught_up ? 1 : 0);
  write_marks(w, m.have);
}
void write_payload(Writer& w, const msg::Fetch& m) {
  w.varint(m.after_seq);
  w.varint(m.limit);
}
void write_payload(Writer& w, const msg::Apply& m) {
  w.varint(m.upto_stamp);
  w.varint(m.synced_upto);
  w.varint(m.id_floor);
  w.varint(m.purge_upto);
  w.u8((m.reset ? kApplyReset : 0) | (m.rebirth ? kApplyRebirth : 0) | (m.adopt ? kApplyAdopt : 0) |
       (m.marks_current ? kApplyMarksCurrent : 0) | (m.hold ? kApplyHold : 0));
  write_stamped(w, m.changes);
  w.varint(m.stamp_high);
  write_marks(w, m.marks);
  w.varint(m.after_stamp);
  w.varint(m.log_id);
  w.varint(m.incarnation);
  w.varint(m.syncer_life);
}
void write_payload(Writer& w, const msg::Dump& m) {
  w.str(m.after);
  w.varint(m.limit);
}
void write_payload(Writer& w, const msg::Dumped& m) {
  write_stamped(w, m.items);
  w.str(m.next);
  write_marks(w, m.cursors);
  w.varint(m.seq);
}
void write_payload(Writer& w, const msg::Pong&) {}
void write_payload(Writer& w, const msg::StatusReply& m) {
  const NodeStatus& s = m.status;
  w.str(s.name);
  w.varint(s.incarnation);
  w.varint(s.version);
  w.varint(s.seq);
  w.varint(s.applied_stamp);
  w.varint(s.synced_upto);
  w.varint(s.items);
  w.varint(s.tombstones);
  w.varint(s.unsynced);
  w.varint(s.http_port);
  w.varint(s.syncer_stamp);
  w.varint(s.subscribers);
  w.varint(s.max_id_number);
  w.varint(s.log_id);
  w.varint(s.purged_upto);
  w.varint(s.digest);
  w.varint(s.digest_stamp);
  w.varint(s.memory_applied_stamp);
  w.varint(s.syncer_life);
}
void write_payload(Writer& w, const msg::ItemReply& m) {
  w.item(m.item);
  w.varint(m.seq);
  w.varint(m.incarnation);
}
void write_payload(Writer& w, const msg::ItemsReply& m) {
  w.varint(m.items.size());
  for (const auto& it : m.items) w.item(it);
  w.str(m.next);
}
void write_payload(Writer& w, const msg::Changes& m) {
  w.varint(m.seq_high);
  w.varint(m.changes.size());
  for (const auto& c : m.changes) {
    w.varint(c.seq);
    w.item(c.item);
    w.varint(c.base_stamp);
    w.varint(c.base_seq);
  }
}
void write_payload(Writer& w, const msg::Applied& m) {
  w.varint(m.applied_stamp);
  w.varint(m.synced_upto);
  w.varint(m.changed);
  w.varint(m.incarnation);
  w.varint(m.digest);
  w.varint(m.unsynced);
}
void write_payload(Writer& w, const msg::Error& m) {
  w.u16(static_cast<std::uint16_t>(m.code));
  w.str(m.message.size() > kMaxMessageBytes ? m.message.substr(0, kMaxMessageBytes) : m.message);
}

// A count read off the wire may not promise more elements than the payload could hold at the
// smallest encoding of one element, and space is reserved for a bounded number up front, so a
// frame cannot make us allocate far beyond its own size.
constexpr std::size_t kMinItemBytes = 4;                     // empty id and title, flags, version
constexpr std::size_t kMinChangeBytes = 3 + kMinItemBytes;   // seq, item, base stamp, seq
constexpr std::size_t kMinStampedBytes = 3 + kMinItemBytes;  // stamp, origin, seq, item
constexpr std::uint64_t kMaxReserve = 1024;
bool plausible_count(std::uint64_t n, std::size_t payload_size, std::size_t min_element) {
  return n <= payload_size / min_element;
}

// A count (checked against the payload's size) and that many stamped changes.
bool read_stamped(Reader& r, std::size_t size, std::vector<StampedChange>& out) {
  const std::uint64_t n = r.varint();
  if (!plausible_count(n, size, kMinStampedBytes)) return false;
  out.reserve(std::min(n, kMaxReserve));
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    StampedChange c;
    c.stamp = r.varint();
    c.origin = r.str(kMaxNameBytes);
    c.origin_seq = r.varint();
    c.item = r.item();
    out.push_back(std::move(c));
  }
  return r.ok();
}

// At most kMaxSessionMarks; false when the count is larger.
bool read_marks(Reader& r, std::vector<SessionMark>& out) {
  const std::uint64_t n = r.varint();
  if (n > kMaxSessionMarks) return false;
  out.reserve(n);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    SessionMark m;
    m.node = r.str(kMaxNameBytes);
    m.incarnation = r.varint();
    m.seq = r.varint();
    out.push_back(std::move(m));
  }
  return r.ok();
}

std::optional<Request> read_request(MsgType type, Reader& r, std::size_t size) {
  switch (type) {
    case MsgType::kPing:
      return msg::Ping{};
    case MsgType::kStatus:
      return msg::Status{r.varint()};
    case MsgType::kAuth:
      return msg::Auth{r.str(kMaxSecretBytes)};
    case MsgType::kList: {
      msg::List m;
      m.after = r.str(kMaxIdBytes);
      m.limit = r.varint();
      return m;
    }
    case MsgType::kCreate:
      return msg::Create{r.str(kMaxTitleBytes)};
    case MsgType::kGet:
      return msg::Get{r.str(kMaxIdBytes)};
    case MsgType::kDelete:
      return msg::Delete{r.str(kMaxIdBytes)};
    case MsgType::kUpdate: {
      msg::Update m;
      m.id = r.str(kMaxIdBytes);
      const std::uint8_t mask = r.u8();
      if (mask & ~(kFlagHasCompleted | kFlagHasTitle)) return std::nullopt;
      if (mask & kFlagHasCompleted) {
        const std::uint8_t v = r.u8();
        if (v > 1) return std::nullopt;
        m.completed = v == 1;
      }
      if (mask & kFlagHasTitle) m.title = r.str(kMaxTitleBytes);
      return m;
    }
    case MsgType::kWait: {
      msg::Wait m;
      m.timeout_ms = r.varint();
      if (!read_marks(r, m.want)) return std::nullopt;
      return m;
    }
    case MsgType::kFetch: {
      msg::Fetch m;
      m.after_seq = r.varint();
      m.limit = r.varint();
      return m;
    }
    case MsgType::kApply: {
      msg::Apply m;
      m.upto_stamp = r.varint();
      m.synced_upto = r.varint();
      m.id_floor = r.varint();
      m.purge_upto = r.varint();
      const std::uint8_t flags = r.u8();
      if (flags & ~(kApplyReset | kApplyRebirth | kApplyAdopt | kApplyMarksCurrent | kApplyHold)) {
        return std::nullopt;
      }
      m.reset = flags & kApplyReset;
      m.rebirth = flags & kApplyRebirth;
      m.adopt = flags & kApplyAdopt;
      m.marks_current = flags & kApplyMarksCurrent;
      m.hold = flags & kApplyHold;
      if (!read_stamped(r, size, m.changes)) return std::nullopt;
      m.stamp_high = r.varint();
      if (!read_marks(r, m.marks)) return std::nullopt;
      m.after_stamp = r.varint();
      m.log_id = r.varint();
      m.incarnation = r.varint();
      m.syncer_life = r.varint();
      return m;
    }
    case MsgType::kDump: {
      msg::Dump m;
      m.after = r.str(kMaxIdBytes);
      m.limit = r.varint();
      return m;
    }
    default:
      return std::nullopt;
  }
}

std::optional<Response> read_response(MsgType type, Reader& r, std::size_t size) {
  switch (type) {
    case MsgType::kPing:
    case MsgType::kAuth:
      return msg::Pong{};
    case MsgType::kStatus: {
      NodeStatus s;
      s.name = r.str(kMaxNameBytes);
      s.incarnation = r.varint();
      s.version = r.varint();
      s.seq = r.varint();
      s.applied_stamp = r.varint();
      s.synced_upto = r.varint();
      s.items = r.varint();
      s.tombstones = r.varint();
      s.unsynced = r.varint();
      s.http_port = r.varint();
      s.syncer_stamp = r.varint();
      s.subscribers = r.varint();
      s.max_id_number = r.varint();
      s.log_id = r.varint();
      s.purged_upto = r.varint();
      s.digest = r.varint();
      s.digest_stamp = r.varint();
      s.memory_applied_stamp = r.varint();
      s.syncer_life = r.varint();
      return msg::StatusReply{std::move(s)};
    }
    case MsgType::kCreate:
    case MsgType::kGet:
    case MsgType::kUpdate:
    case MsgType::kDelete: {
      msg::ItemReply m;
      m.item = r.item();
      m.seq = r.varint();
      m.incarnation = r.varint();
      return m;
    }
    case MsgType::kWait: {
      msg::Waited m;
      const std::uint8_t flag = r.u8();
      if (flag > 1) return std::nullopt;
      m.caught_up = flag == 1;
      if (!read_marks(r, m.have)) return std::nullopt;
      return m;
    }
    case MsgType::kList: {
      const std::uint64_t n = r.varint();
      if (!plausible_count(n, size, kMinItemBytes)) return std::nullopt;
      msg::ItemsReply m;
      m.items.reserve(std::min(n, kMaxReserve));
      for (std::uint64_t i = 0; i < n && r.ok(); ++i) m.items.push_back(r.item());
      m.next = r.str(kMaxIdBytes);
      return m;
    }
    case MsgType::kFetch: {
      msg::Changes m;
      m.seq_high = r.varint();
      const std::uint64_t n = r.varint();
      if (!plausible_count(n, size, kMinChangeBytes)) return std::nullopt;
      m.changes.reserve(std::min(n, kMaxReserve));
      for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
        Change c;
        c.seq = r.varint();
        c.item = r.item();
        c.base_stamp = r.varint();
        c.base_seq = r.varint();
        m.changes.push_back(std::move(c));
      }
      return m;
    }
    case MsgType::kApply: {
      msg::Applied m;
      m.applied_stamp = r.varint();
      m.synced_upto = r.varint();
      m.changed = r.varint();
      m.incarnation = r.varint();
      m.digest = r.varint();
      m.unsynced = r.varint();
      return m;
    }
    case MsgType::kDump: {
      msg::Dumped m;
      if (!read_stamped(r, size, m.items)) return std::nullopt;
      m.next = r.str(kMaxIdBytes);
      if (!read_marks(r, m.cursors)) return std::nullopt;
      m.seq = r.varint();
      return m;
    }
    default:
      return std::nullopt;
  }
}

bool known_request_type(std::uint8_t t) {
  switch (static_cast<MsgType>(t)) {
    case MsgType::kPing:
    case MsgType::kStatus:
    case MsgType::kAuth:
    case MsgType::kCreate:
    case MsgType::kGet:
    case MsgType::kList:
    case MsgType::kUpdate:
    case MsgType::kDelete:
    case MsgType::kWait:
    case MsgType::kFetch:
    case MsgType::kApply:
    case MsgType::kDump:
      return true;
    default:
      return false;
  }
}
}  // namespace

void encode_request(std::string& out, std::uint32_t request_id, const Request& req) {
  std::string payload;
  Writer w(payload);
  std::visit([&](const auto& m) { write_payload(w, m); }, req);
  append_frame(out, static_cast<std::uint8_t>(type_of(req)), request_id, payload);
}

void encode_response(std::string& out, std::uint32_t request_id, MsgType request_type,
                     const Response& resp) {
  std::string payload;
  Writer w(payload);
  std::visit([&](const auto& m) { write_payload(w, m); }, resp);
  const std::uint8_t type = std::holds_alternative<msg::Error>(resp)
                                ? static_cast<std::uint8_t>(MsgType::kError)
                                : static_cast<std::uint8_t>(request_type) | kResponseBit;
  append_frame(out, type, request_id, payload);
}

std::variant<Request, msg::Error> parse_request(const FrameView& frame) {
  if (!known_request_type(frame.type)) {
    return msg::Error{ErrorCode::kUnknownType, "unknown message type 0x" + [&] {
                        static constexpr char kHex[] = "0123456789abcdef";
                        return std::string{kHex[frame.type >> 4], kHex[frame.type & 15]};
                      }()};
  }
  Reader r(frame.payload);
  auto req = read_request(static_cast<MsgType>(frame.type), r, frame.payload.size());
  if (!req || !r.done()) return msg::Error{ErrorCode::kBadFrame, "malformed request payload"};
  return std::move(*req);
}

std::variant<Response, msg::Error> parse_response(const FrameView& frame, MsgType request_type) {
  Reader r(frame.payload);
  if (frame.type == static_cast<std::uint8_t>(MsgType::kError)) {
    msg::Error e;
    const std::uint16_t code = r.u16();
    e.message = r.str(kMaxMessageBytes);
    if (!r.done() || code < 1 || code > static_cast<std::uint16_t>(ErrorCode::kUnauthenticated)) {
      return msg::Error{ErrorCode::kBadFrame, "malformed error response"};
    }
    e.code = static_cast<ErrorCode>(code);
    return Response{std::move(e)};
  }
  if (frame.type != (static_cast<std::uint8_t>(request_type) | kResponseBit)) {
    return msg::Error{ErrorCode::kBadFrame, "response type does not match the request"};
  }
  auto resp = read_response(request_type, r, frame.payload.size());
  if (!resp || !r.done()) return msg::Error{ErrorCode::kBadFrame, "malformed response payload"};
  return std::move(*resp);
}

}  // namespace kv::proto

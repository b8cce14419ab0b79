// Fuzzes the binary protocol's decoder (src/core/protocol.cpp): decode_frame over a byte stream,
// then parse_request and parse_response (for every request type) on each whole frame.
//
// Properties, beyond "no crash, no sanitizer report":
//  - decode_frame: a frame lies inside the input, its payload is the rest of the frame, and it
//    reports kNeedMore only when the input is too short for the announced length;
//  - a frame parses as a response to at most the request type its own type names (or kError);
//  - round trip: whatever parses re-encodes to a frame that parses and re-encodes to the same
//    bytes; the re-encoding is never longer than the input frame (the encoder is canonical: the
//    shortest varints), and when it is as long, it is byte for byte the input frame.
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/protocol.hpp"
#include "fuzz_check.hpp"

namespace proto = kv::proto;

namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// The request types this build knows, found by asking parse_request rather than listed here, so a
// message type added to the protocol is fuzzed without touching this file.
std::vector<proto::MsgType> request_types() {
  std::vector<proto::MsgType> types;
  for (unsigned t = 0; t < proto::kResponseBit; ++t) {
    proto::FrameView f;
    f.type = static_cast<std::uint8_t>(t);
    f.size = proto::kHeaderSize;
    const auto r = parse_request(f);
    if (const auto* e = std::get_if<proto::msg::Error>(&r);
        e && e->code == proto::ErrorCode::kUnknownType) {
      continue;
    }
    types.push_back(static_cast<proto::MsgType>(t));
  }
  return types;
}

// `frame` is the whole input frame (header included); `again` a re-encoding of what it parsed to.
void check_canonical(std::span<const std::uint8_t> frame, const std::string& again) {
  KV_FUZZ_CHECK(again.size() <= frame.size());
  if (again.size() == frame.size()) {
    KV_FUZZ_CHECK(std::memcmp(again.data(), frame.data(), frame.size()) == 0);
  }
}

// Decodes `bytes` as exactly one whole frame.
proto::FrameView one_frame(const std::string& bytes) {
  const auto d = proto::decode_frame(bytes_of(bytes));
  KV_FUZZ_CHECK(d.status == proto::DecodeStatus::kFrame);
  KV_FUZZ_CHECK(d.frame.size == bytes.size());
  return d.frame;
}

void check_request(const proto::FrameView& f, std::span<const std::uint8_t> frame_bytes) {
  auto parsed = proto::parse_request(f);
  if (auto* e = std::get_if<proto::msg::Error>(&parsed)) {
    KV_FUZZ_CHECK(e->code == proto::ErrorCode::kBadFrame ||
                  e->code == proto::ErrorCode::kUnknownType);
    return;
  }
  const auto& req = std::get<proto::Request>(parsed);
  KV_FUZZ_CHECK(static_cast<std::uint8_t>(proto::type_of(req)) == f.type);

  std::string once;
  proto::encode_request(once, f.request_id, req);
  check_canonical(frame_bytes, once);

  const proto::FrameView f2 = one_frame(once);
  KV_FUZZ_CHECK(f2.type == f.type && f2.request_id == f.request_id);
  auto reparsed = proto::parse_request(f2);
  KV_FUZZ_CHECK(std::holds_alternative<proto::Request>(reparsed));
  std::string twice;
  proto::encode_request(twice, f2.request_id, std::get<proto::Request>(reparsed));
  KV_FUZZ_CHECK(twice == once);
}

void check_response(const proto::FrameView& f, std::span<const std::uint8_t> frame_bytes,
                    proto::MsgType request_type) {
  const bool is_error = f.type == static_cast<std::uint8_t>(proto::MsgType::kError);
  const bool matches = f.type == (static_cast<std::uint8_t>(request_type) | proto::kResponseBit);
  auto parsed = proto::parse_response(f, request_type);
  if (auto* e = std::get_if<proto::msg::Error>(&parsed)) {
    KV_FUZZ_CHECK(e->code == proto::ErrorCode::kBadFrame);
    return;
  }
  KV_FUZZ_CHECK(is_error || matches);
  const auto& resp = std::get<proto::Response>(parsed);
  KV_FUZZ_CHECK(is_error == std::holds_alternative<proto::msg::Error>(resp));

  std::string once;
  proto::encode_response(once, f.request_id, request_type, resp);
  check_canonical(frame_bytes, once);

  const proto::FrameView f2 = one_frame(once);
  KV_FUZZ_CHECK(f2.type == f.type && f2.request_id == f.request_id);
  auto reparsed = proto::parse_response(f2, request_type);
  KV_FUZZ_CHECK(std::holds_alternative<proto::Response>(reparsed));
  std::string twice;
  proto::encode_response(twice, f2.request_id, request_type, std::get<proto::Response>(reparsed));
  KV_FUZZ_CHECK(twice == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<proto::MsgType> types = request_types();
  std::span<const std::uint8_t> in(data, size);
  for (;;) {
    const proto::DecodeResult d = proto::decode_frame(in);
    if (d.status == proto::DecodeStatus::kNeedMore) {
      if (in.size() >= proto::kLengthSize) {
        const std::uint32_t length = (std::uint32_t{in[0]} << 24) | (std::uint32_t{in[1]} << 16) |
                                     (std::uint32_t{in[2]} << 8) | std::uint32_t{in[3]};
        KV_FUZZ_CHECK(length >= proto::kMinLength && length <= proto::kMaxFrameLength);
        KV_FUZZ_CHECK(in.size() < proto::kLengthSize + length);
      }
      break;
    }
    if (d.status == proto::DecodeStatus::kError) {
      KV_FUZZ_CHECK(d.error == proto::ErrorCode::kBadFrame ||
                    d.error == proto::ErrorCode::kFrameTooLarge);
      break;
    }
    const proto::FrameView& f = d.frame;
    KV_FUZZ_CHECK(f.size >= proto::kHeaderSize && f.size <= in.size());
    KV_FUZZ_CHECK(f.payload.data() == in.data() + proto::kHeaderSize);
    KV_FUZZ_CHECK(f.payload.size() == f.size - proto::kHeaderSize);
    KV_FUZZ_CHECK(f.type == in[4]);
    const auto frame_bytes = in.first(f.size);

    check_request(f, frame_bytes);
    for (const proto::MsgType t : types) check_response(f, frame_bytes, t);
    in = in.subspan(f.size);
  }
  return 0;
}

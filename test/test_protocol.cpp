// The wire codec: every message round-trips, frames split at every byte decode, and truncated,
// oversized and garbage input gives errors, never crashes.
#define BOOST_TEST_MODULE protocol
#include <boost/test/unit_test.hpp>

#include <random>

#include <boost/json.hpp>

#include "common/item.hpp"
#include "common/item_json.hpp"
#include "common/notification.hpp"
#include "common/protocol.hpp"

using namespace kv;
using namespace kv::proto;

namespace {
std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Item sample_item(int i) {
  return Item{std::to_string(i) + "a", "Task " + std::to_string(i), i % 2 == 0, i % 3 == 0,
              static_cast<std::uint64_t>(i) * 1000003};
}

std::vector<Request> all_requests() {
  msg::Apply apply{77, 12, 40, 30, true, {}, 80, {{"a", 99, 7}, {"b", 1ull << 62, 0}}};
  for (int i = 1; i <= 3; ++i) {
    Item it = sample_item(i);
    it.version = 70 + i;
    apply.changes.push_back(StampedChange{70u + i, "b", 5u + i, it});
  }
  return {msg::Ping{},
          msg::Status{},
          msg::Create{"Buy milk"},
          msg::Get{"3b"},
          msg::List{},
          msg::List{"12b", 50},
          msg::Update{"1a", true, std::nullopt},
          msg::Update{"1a", std::nullopt, std::string("New title")},
          msg::Update{"1a", false, std::string("Both")},
          msg::Delete{"2a"},
          msg::Fetch{~0ull, 1000},
          msg::Wait{2000, {{"a", 5, 17}, {"c", ~0ull, 1}}},
          msg::Wait{},
          apply};
}

std::vector<std::pair<MsgType, Response>> all_responses() {
  NodeStatus st{"b", 0xdeadbeefcafe, 9, 7, 5, 4, 3, 2, 1, 7101, 12, 3};
  msg::Changes changes{42, {Change{40, sample_item(4)}, Change{42, sample_item(5)}}};
  return {{MsgType::kPing, msg::Pong{}},
          {MsgType::kStatus, msg::StatusReply{st}},
          {MsgType::kCreate, msg::ItemReply{sample_item(1), 33, 0xfeed}},
          {MsgType::kGet, msg::ItemReply{sample_item(2)}},
          {MsgType::kWait, msg::Waited{true, {{"a", 5, 17}}}},
          {MsgType::kWait, msg::Waited{false, {}}},
          {MsgType::kList, msg::ItemsReply{{sample_item(1), sample_item(2), sample_item(3)}, ""}},
          {MsgType::kList, msg::ItemsReply{}},
          {MsgType::kList, msg::ItemsReply{{sample_item(4)}, "4a"}},
          {MsgType::kFetch, changes},
          {MsgType::kApply, msg::Applied{77, 12, 3}},
          {MsgType::kGet, msg::Error{ErrorCode::kNotFound, "there is no item 9z"}}};
}

bool same(const Request& a, const Request& b) {
  std::string ea, eb;
  encode_request(ea, 1, a);
  encode_request(eb, 1, b);
  return ea == eb;
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_request_round_trips) {
  std::uint32_t id = 1;
  for (const auto& req : all_requests()) {
    std::string wire;
    encode_request(wire, id, req);
    auto d = decode_frame(bytes(wire));
    BOOST_TEST_REQUIRE((d.status == DecodeStatus::kFrame));
    BOOST_TEST(d.frame.size == wire.size());
    BOOST_TEST(d.frame.request_id == id);
    auto parsed = parse_request(d.frame);
    BOOST_TEST_REQUIRE(std::holds_alternative<Request>(parsed));
    BOOST_TEST(same(std::get<Request>(parsed), req));
    ++id;
  }
}

BOOST_AUTO_TEST_CASE(every_response_round_trips) {
  for (const auto& [type, resp] : all_responses()) {
    std::string wire;
    encode_response(wire, 9, type, resp);
    auto d = decode_frame(bytes(wire));
    BOOST_TEST_REQUIRE((d.status == DecodeStatus::kFrame));
    auto parsed = parse_response(d.frame, type);
    BOOST_TEST_REQUIRE(std::holds_alternative<Response>(parsed));
    std::string again;
    encode_response(again, 9, type, std::get<Response>(parsed));
    BOOST_TEST(again == wire);
  }
}

BOOST_AUTO_TEST_CASE(the_documented_hex_example_decodes) {
  // docs/protocol.md: CREATE "Buy milk" with request id 1.
  std::string wire;
  encode_request(wire, 1, msg::Create{"Buy milk"});
  const std::string expected(
      "\x00\x00\x00\x0e\x10\x00\x00\x00\x01\x08"
      "Buy milk",
      18);
  BOOST_TEST(wire == expected);
  // And its answer: item 1a, "Buy milk", not completed, version 1; change 1 of incarnation 5.
  std::string reply;
  encode_response(reply, 1, MsgType::kCreate,
                  msg::ItemReply{Item{"1a", "Buy milk", false, false, 1}, 1, 5});
  const std::string expected_reply(
      "\x00\x00\x00\x15\x90\x00\x00\x00\x01\x02"
      "1a\x08"
      "Buy milk\x00\x01\x01\x05",
      25);
  BOOST_TEST(reply == expected_reply);
}

BOOST_AUTO_TEST_CASE(frames_split_at_every_byte_boundary_decode) {
  std::string stream;
  std::uint32_t id = 1;
  const auto reqs = all_requests();
  for (const auto& req : reqs) encode_request(stream, id++, req);
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    // Feed the first `cut` bytes, then the rest, as a socket might deliver them.
    std::string buf = stream.substr(0, cut);
    std::size_t decoded = 0;
    auto drain = [&] {
      for (;;) {
        auto d = decode_frame(bytes(buf));
        if (d.status == DecodeStatus::kNeedMore) return;
        BOOST_TEST_REQUIRE((d.status == DecodeStatus::kFrame));
        auto parsed = parse_request(d.frame);
        BOOST_TEST_REQUIRE(std::holds_alternative<Request>(parsed));
        BOOST_TEST(same(std::get<Request>(parsed), reqs[decoded]));
        ++decoded;
        buf.erase(0, d.frame.size);
      }
    };
    drain();
    buf += stream.substr(cut);
    drain();
    BOOST_TEST(decoded == reqs.size());
    BOOST_TEST(buf.empty());
  }
}

BOOST_AUTO_TEST_CASE(truncated_frames_need_more_and_truncated_payloads_are_errors) {
  std::string wire;
  encode_request(wire, 5, msg::Update{"1a", true, std::string("title")});
  for (std::size_t n = 0; n < wire.size(); ++n) {
    auto d = decode_frame(bytes(wire.substr(0, n)));
    BOOST_TEST((d.status == DecodeStatus::kNeedMore));
  }
  // A frame whose length is honest but whose payload is cut short.
  const std::size_t payload = wire.size() - kHeaderSize;
  for (std::size_t keep = 0; keep < payload; ++keep) {
    std::string cut;
    append_frame(cut, static_cast<std::uint8_t>(MsgType::kUpdate), 5,
                 std::string_view(wire).substr(kHeaderSize, keep));
    auto d = decode_frame(bytes(cut));
    BOOST_TEST_REQUIRE((d.status == DecodeStatus::kFrame));
    auto parsed = parse_request(d.frame);
    BOOST_TEST_REQUIRE(std::holds_alternative<msg::Error>(parsed));
    BOOST_TEST((std::get<msg::Error>(parsed).code == ErrorCode::kBadFrame));
  }
}

BOOST_AUTO_TEST_CASE(oversized_and_undersized_lengths_are_errors) {
  const std::string huge("\xff\xff\xff\xff\x01\x00\x00\x00\x01", 9);
  auto d = decode_frame(bytes(huge));
  BOOST_TEST((d.status == DecodeStatus::kError));
  BOOST_TEST((d.error == ErrorCode::kFrameTooLarge));
  const std::string just_over("\x00\x40\x00\x01", 4);  // 4 MiB + 1
  BOOST_TEST((decode_frame(bytes(just_over)).error == ErrorCode::kFrameTooLarge));
  const std::string tiny("\x00\x00\x00\x02\x01\x00", 6);
  d = decode_frame(bytes(tiny));
  BOOST_TEST((d.status == DecodeStatus::kError));
  BOOST_TEST((d.error == ErrorCode::kBadFrame));
}

BOOST_AUTO_TEST_CASE(unknown_types_and_trailing_bytes_are_errors) {
  std::string wire;
  append_frame(wire, 0x7e, 3, "");
  auto d = decode_frame(bytes(wire));
  auto parsed = parse_request(d.frame);
  BOOST_TEST_REQUIRE(std::holds_alternative<msg::Error>(parsed));
  BOOST_TEST((std::get<msg::Error>(parsed).code == ErrorCode::kUnknownType));

  wire.clear();
  append_frame(wire, static_cast<std::uint8_t>(MsgType::kPing), 3, "x");
  d = decode_frame(bytes(wire));
  parsed = parse_request(d.frame);
  BOOST_TEST((std::get<msg::Error>(parsed).code == ErrorCode::kBadFrame));

  // A count that promises more elements than the payload could hold is refused up front.
  std::string payload;
  Writer w(payload);
  w.varint(1);
  w.varint(0);
  w.varint(1ull << 40);
  wire.clear();
  append_frame(wire, static_cast<std::uint8_t>(MsgType::kApply), 3, payload);
  d = decode_frame(bytes(wire));
  BOOST_TEST(std::holds_alternative<msg::Error>(parse_request(d.frame)));

  // A WAIT naming more than kMaxSessionMarks nodes is refused, one at the limit is not.
  for (std::size_t n : {kMaxSessionMarks, kMaxSessionMarks + 1}) {
    msg::Wait wait{100, std::vector<SessionMark>(n, SessionMark{"a", 1, 1})};
    wire.clear();
    encode_request(wire, 4, wait);
    d = decode_frame(bytes(wire));
    BOOST_TEST(std::holds_alternative<msg::Error>(parse_request(d.frame)) ==
               (n > kMaxSessionMarks));
  }
}

BOOST_AUTO_TEST_CASE(varints_reject_overlong_encodings) {
  const std::uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  Reader r(eleven);
  r.varint();
  BOOST_TEST(!r.ok());
  const std::uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  Reader m(max);
  BOOST_TEST(m.varint() == ~0ull);
  BOOST_TEST(m.done());
}

BOOST_AUTO_TEST_CASE(random_garbage_never_crashes_the_decoder) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 20000; ++round) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    if (junk.size() >= 4 && round % 2 == 0) {
      // Mostly-plausible lengths reach the payload parsers.
      const std::uint32_t len = junk.size() - 4;
      junk[0] = 0, junk[1] = 0, junk[2] = static_cast<char>(len >> 8),
      junk[3] = static_cast<char>(len);
    }
    auto d = decode_frame(bytes(junk));
    if (d.status == DecodeStatus::kFrame) {
      (void)parse_request(d.frame);
      for (std::uint8_t t : {0x01, 0x02, 0x10, 0x12, 0x20, 0x21}) {
        (void)parse_response(d.frame, static_cast<MsgType>(t));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(item_ids_are_short_unique_per_node_and_sort_by_number) {
  BOOST_TEST(make_item_id(3, "b") == "3b");
  BOOST_TEST(item_id_number("12ab").value() == 12u);
  BOOST_TEST(!item_id_number("ab").has_value());
  BOOST_TEST(!item_id_number("12").has_value());
  BOOST_TEST(!item_id_number("12B").has_value());
  BOOST_TEST(item_id_less("2a", "10a"));
  BOOST_TEST(item_id_less("3a", "3b"));
  BOOST_TEST(valid_node_name("abc"));
  BOOST_TEST(!valid_node_name("Abc"));
  BOOST_TEST(!valid_node_name("abcdefghi"));
}

// One JSON shape for an item everywhere (issue 11): every field, deleted included, and back.
BOOST_AUTO_TEST_CASE(an_item_has_one_json_shape_and_reads_back) {
  namespace json = boost::json;
  const Item it{"12b", "Buy \"milk\"", true, true, 42};
  const json::value v = json::value_from(it);
  BOOST_TEST(json::serialize(v) ==
             R"({"id":"12b","title":"Buy \"milk\"","completed":true,"deleted":true,"version":42})");
  BOOST_TEST((json::value_to<Item>(v) == it));
  BOOST_CHECK_THROW(json::value_to<Item>(json::parse(R"({"id":"1a","title":"t"})")),
                    std::exception);
}

BOOST_AUTO_TEST_CASE(notifications_round_trip_through_json) {
  Notification n;
  n.kind = Notification::Kind::kSynced;
  n.node = "b";
  n.op = "update";
  n.item = Item{"1a", "Ta\"sk", true, false, 7};
  n.stamp = 7;
  n.origin = "a";
  auto back = parse_notification(to_json(n));
  BOOST_TEST_REQUIRE(back.has_value());
  BOOST_TEST(back->item == n.item);
  BOOST_TEST(back->origin == "a");
  BOOST_TEST((back->kind == Notification::Kind::kSynced));
  BOOST_TEST(!parse_notification("{").has_value());
  BOOST_TEST(!parse_notification(R"({"type":"local","node":"a"})").has_value());
  BOOST_TEST(!parse_notification(R"({"type":"x","node":"a","seq":1})").has_value());
}

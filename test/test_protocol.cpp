// The wire codec: every message round-trips, frames split at every byte decode, and truncated,
// oversized and garbage input gives errors, never crashes.
#define BOOST_TEST_MODULE protocol
#include <boost/test/unit_test.hpp>

#include <random>

#include <boost/json.hpp>

#include "core/client_pipeline.hpp"
#include "core/item.hpp"
#include "core/item_json.hpp"
#include "core/notification.hpp"
#include "core/protocol.hpp"

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
  apply.syncer_life = 1ull << 40;
  return {msg::Ping{},
          msg::Status{},
          msg::Status{17},
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
          msg::Auth{"s3cret"},
          msg::Dump{},
          msg::Dump{"17c", 500},
          apply};
}

std::vector<std::pair<MsgType, Response>> all_responses() {
  NodeStatus st{"b", 0xdeadbeefcafe, 9, 7, 5, 4, 3, 2, 1, 7101, 12, 3};
  st.memory_applied_stamp = 6;
  st.syncer_life = 17;
  msg::Changes changes{42, {Change{40, sample_item(4), 7, 3}, Change{42, sample_item(5)}}};
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
          {MsgType::kApply, msg::Applied{77, 12, 3, 0xabc, 0x1234567890, 2}},
          {MsgType::kAuth, msg::Pong{}},
          {MsgType::kDump,
           msg::Dumped{{StampedChange{9, "c", 4, sample_item(6)}}, "6a", {{"a", 5, 17}}, 31}},
          {MsgType::kGet, msg::Error{ErrorCode::kNotFound, "there is no item 9z"}}};
}

// Decoded messages are compared with the originals field by field (not re-encoded: an encoder
// and decoder that both drop a field would agree with each other).
bool same(const Request& a, const Request& b) {
  return a == b;
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
    BOOST_TEST((std::get<Response>(parsed) == resp), "response to type " << int(type));
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

// ---- The client's side of a connection (ClientPipeline) ----------------------------------------

namespace {
// Feeds `wire` to `p` in reads that end at `cuts`, collecting every answer; returns the first
// failure.
ClientPipeline::Failure feed(ClientPipeline& p, const std::string& wire,
                             const std::vector<std::size_t>& cuts,
                             std::vector<ClientPipeline::Answer>& answers) {
  std::size_t fed = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(wire.size());
  for (const std::size_t end : ends) {
    while (fed < std::min(end, wire.size())) {
      auto into = p.buffer();
      const std::size_t n = std::min(std::min(end, wire.size()) - fed, into.size());
      std::copy_n(wire.data() + fed, n, into.data());
      fed += n;
      if (auto f = p.received(n, answers); f != ClientPipeline::Failure::kNone) return f;
    }
  }
  return ClientPipeline::Failure::kNone;
}
}  // namespace

BOOST_AUTO_TEST_CASE(the_client_matches_answers_to_requests_however_the_bytes_are_split) {
  const auto responses = all_responses();
  // The node's side: the answers, in order, to requests of the matching types.
  std::string sent, wire;
  ClientPipeline reference;
  std::vector<std::uint32_t> ids;
  for (const auto& [type, resp] : responses) {
    Request req = msg::Ping{};
    for (auto& r : all_requests()) {
      if (type_of(r) == type) req = r;
    }
    ids.push_back(reference.send(sent, req));
    encode_response(wire, ids.back(), type, resp);
  }
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
    ClientPipeline p;
    std::string out;
    for (const auto& [type, resp] : responses) {
      Request req = msg::Ping{};
      for (auto& r : all_requests()) {
        if (type_of(r) == type) req = r;
      }
      p.send(out, req);
    }
    BOOST_TEST(out == sent);  // the same ids, in the same order
    std::vector<ClientPipeline::Answer> answers;
    BOOST_TEST_REQUIRE((feed(p, wire, {cut}, answers) == ClientPipeline::Failure::kNone),
                       "split at " << cut);
    BOOST_TEST_REQUIRE(answers.size() == responses.size());
    for (std::size_t i = 0; i < answers.size(); ++i) {
      BOOST_TEST(answers[i].id == ids[i]);
      BOOST_TEST((answers[i].response == responses[i].second), "answer " << i << ", split " << cut);
    }
    BOOST_TEST(p.in_flight() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(the_client_refuses_answers_nobody_asked_for_or_out_of_order) {
  {
    ClientPipeline p;
    std::string out, wire;
    encode_response(wire, 1, MsgType::kPing, msg::Pong{});
    std::vector<ClientPipeline::Answer> answers;
    BOOST_TEST((feed(p, wire, {}, answers) == ClientPipeline::Failure::kUnsolicited));
  }
  {
    ClientPipeline p;
    std::string out, wire;
    const auto first = p.send(out, msg::Ping{});
    const auto second = p.send(out, msg::Ping{});
    encode_response(wire, second, MsgType::kPing, msg::Pong{});
    encode_response(wire, first, MsgType::kPing, msg::Pong{});
    std::vector<ClientPipeline::Answer> answers;
    BOOST_TEST((feed(p, wire, {}, answers) == ClientPipeline::Failure::kOutOfOrder));
    BOOST_TEST(answers.empty());
  }
  {
    // A frame-level error (request id 0) answers the oldest request.
    ClientPipeline p;
    std::string out, wire;
    const auto first = p.send(out, msg::Create{"x"});
    encode_response(wire, 0, MsgType::kPing, msg::Error{ErrorCode::kFrameTooLarge, "too big"});
    std::vector<ClientPipeline::Answer> answers;
    BOOST_TEST((feed(p, wire, {}, answers) == ClientPipeline::Failure::kNone));
    BOOST_TEST_REQUIRE(answers.size() == 1u);
    BOOST_TEST(answers[0].id == first);
    BOOST_TEST(std::holds_alternative<msg::Error>(answers[0].response));
  }
  {
    // A TLS alert where the first answer should be: not a frame, kept unread for the caller to
    // recognise.
    ClientPipeline p;
    std::string out;
    p.send(out, msg::Ping{});
    const std::string alert{"\x15\x03\x03\x00\x02\x02\x46", 7};
    std::vector<ClientPipeline::Answer> answers;
    BOOST_TEST((feed(p, alert, {}, answers) == ClientPipeline::Failure::kNotAFrame));
    BOOST_TEST(!p.answered());
    BOOST_TEST(p.unread().size() == alert.size());
    BOOST_TEST(p.unread()[0] == 0x15);
  }
}

// The binary session without I/O (src/node/binary_session.hpp): the same requests give the same
// answers however the bytes are split; authentication, pipelining order, slow and fatal frames,
// and answers held until their change is durable. A real Store (on the simulator's in-memory
// disk) answers the requests, through the same answer() the server uses.
#define BOOST_TEST_MODULE binary_session
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "node/binary_session.hpp"
#include "node/requests.hpp"
#include "sim/mem_disk.hpp"

using namespace kv;
using namespace kv::node;
using Clock = BinarySession::Clock;
using namespace std::chrono_literals;
using proto::ErrorCode;
using proto::MsgType;

namespace {

struct Sent {
  std::uint32_t id;
  proto::Request request;
};

std::string encode_all(const std::vector<Sent>& reqs) {
  std::string out;
  for (const auto& r : reqs) proto::encode_request(out, r.id, r.request);
  return out;
}

// One answer as the client reads it: its request id, the message type, and the error code (0:
// not an error).
struct Seen {
  std::uint32_t id;
  std::size_t kind;  // Response's variant index
  int code;
  bool operator==(const Seen&) const = default;
};

std::string show(const std::vector<Seen>& v) {
  std::string out;
  for (const auto& s : v) {
    out += "{" + std::to_string(s.id) + " " + std::to_string(s.kind) + " " +
           std::to_string(s.code) + "}";
  }
  return out;
}

std::vector<Seen> decode_all(const std::string& bytes, const std::vector<Sent>& reqs) {
  std::vector<Seen> out;
  std::span<const std::uint8_t> in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                   bytes.size());
  for (;;) {
    auto d = proto::decode_frame(in);
    if (d.status != proto::DecodeStatus::kFrame) {
      BOOST_TEST((d.status == proto::DecodeStatus::kNeedMore && in.empty()),
                 "the session wrote a partial or malformed frame");
      return out;
    }
    MsgType type = MsgType::kPing;
    for (const auto& r : reqs) {
      if (r.id == d.frame.request_id) type = proto::type_of(r.request);
    }
    auto parsed = proto::parse_response(d.frame, type);
    Seen s{d.frame.request_id, 0, 0};
    if (auto* e = std::get_if<proto::msg::Error>(&parsed)) {
      s.kind = std::variant_size_v<proto::Response>;
      s.code = static_cast<int>(e->code);
    } else {
      const auto& r = std::get<proto::Response>(parsed);
      s.kind = r.index();
      if (auto* e2 = std::get_if<proto::msg::Error>(&r)) {
        s.kind = std::variant_size_v<proto::Response>;  // an error, however it was carried
        s.code = static_cast<int>(e2->code);
      }
    }
    out.push_back(s);
    in = in.subspan(d.frame.size);
  }
}

// A node's store on the in-memory disk, with inline commits unless `manual`.
struct Node {
  explicit Node(bool manual = false) {
    StoreOptions o;
    o.dir = "/a";
    o.name = "a";
    o.background_commit = manual;
    o.seams.disk = &disk;
    o.seams.manual_commit = manual;
    o.seams.random = [] { return 7; };
    store = std::make_unique<Store>(o);
  }
  sim::MemDisk disk;
  std::unique_ptr<Store> store;
};

// What one connection did: every byte it wrote, and what else it asked for.
struct Run {
  std::string out;
  int notices = 0;
  std::vector<std::size_t> answers_per_write;
  std::optional<BinarySession::CloseReason> closed;
  std::size_t executed = 0;
};

// Feeds `bytes` in the chunks `cuts` marks (positions where a read ends), answering every
// Execute from `node` and every Write at once, until the session asks to read with nothing left
// to give.
Run drive(const std::string& bytes, const std::vector<std::size_t>& cuts, SessionRules rules,
          Node& node, Clock::time_point now = Clock::time_point{}) {
  BinarySession s(std::move(rules), now);
  Run run;
  std::size_t fed = 0, cut = 0;
  for (int steps = 0; steps < 100000; ++steps) {
    auto a = s.next(now);
    if (std::holds_alternative<BinarySession::Read>(a)) {
      if (fed == bytes.size()) return run;
      const std::size_t until = cut < cuts.size() ? cuts[cut++] : bytes.size();
      auto into = s.buffer();
      const std::size_t n = std::min(until - fed, into.size());
      std::copy_n(bytes.data() + fed, n, into.data());
      fed += n;
      if (fed < until) --cut;  // the buffer was full: the rest of this chunk comes next read
      s.received(n, now);
    } else if (auto* e = std::get_if<BinarySession::Execute>(&a)) {
      ++run.executed;
      auto answered = answer(*node.store, e->request, ServerFacts{});
      s.executed(std::move(answered.response), answered.commit);
    } else if (auto* w = std::get_if<BinarySession::Write>(&a)) {
      BOOST_REQUIRE(node.store->completed(w->commit));
      std::vector<BinarySession::Answered> answered;
      run.out += s.encode([&](Commit c) { return node.store->outcome(c); }, answered);
      run.answers_per_write.push_back(answered.size());
      s.written(now);
    } else if (std::holds_alternative<BinarySession::Notice>(a)) {
      ++run.notices;
    } else {
      run.closed = std::get<BinarySession::Close>(a).reason;
      return run;
    }
  }
  BOOST_FAIL("the session never asked for more bytes");
  return run;
}

const std::vector<Sent> kScript = {
    {1, proto::msg::Ping{}},
    {2, proto::msg::Fetch{0, 10}},           // refused: no AUTH yet
    {3, proto::msg::Auth{"wrong"}},          // refused, and noticed
    {4, proto::msg::Create{"before auth"}},  // clients need no secret by default
    {9, proto::msg::Status{}},
    {10, proto::msg::Status{4}},  // a syncer's claim: refused without AUTH
    {5, proto::msg::Auth{"s3cret"}},
    {6, proto::msg::Fetch{0, 10}},
    {7, proto::msg::Get{"1a"}},
    {8, proto::msg::Get{"9z"}},  // unknown id
};

SessionRules with_secret() {
  SessionRules r;
  r.secret = "s3cret";
  return r;
}

constexpr std::size_t kError = std::variant_size_v<proto::Response>;

std::vector<Seen> expected_script() {
  const auto kind = [](auto msg) { return proto::Response(msg).index(); };
  return {
      {1, kind(proto::msg::Pong{}), 0},
      {2, kError, static_cast<int>(ErrorCode::kUnauthenticated)},
      {3, kError, static_cast<int>(ErrorCode::kUnauthenticated)},
      {4, kind(proto::msg::ItemReply{}), 0},
      {9, kind(proto::msg::StatusReply{}), 0},
      {10, kError, static_cast<int>(ErrorCode::kUnauthenticated)},
      {5, kind(proto::msg::Pong{}), 0},
      {6, kind(proto::msg::Changes{}), 0},
      {7, kind(proto::msg::ItemReply{}), 0},
      {8, kError, static_cast<int>(ErrorCode::kNotFound)},
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_answers_do_not_depend_on_where_the_bytes_are_split) {
  const std::string bytes = encode_all(kScript);
  const auto want = expected_script();
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Node node;
    const Run run = drive(bytes, {cut}, with_secret(), node);
    const auto seen = decode_all(run.out, kScript);
    BOOST_TEST(seen == want,
               "split at byte " << cut << ": " << show(seen) << " not " << show(want));
    BOOST_TEST(run.notices == 1, "split at byte " << cut);
    BOOST_TEST(!run.closed);
  }
  // And one byte per read.
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i <= bytes.size(); ++i) every.push_back(i);
  Node node;
  const Run run = drive(bytes, every, with_secret(), node);
  BOOST_TEST(decode_all(run.out, kScript) == want);
  BOOST_TEST(run.answers_per_write.size() == kScript.size());  // each answered as it completed
}

BOOST_AUTO_TEST_CASE(pipelined_requests_are_answered_in_order_at_most_max_pipeline_per_write) {
  std::vector<Sent> reqs;
  for (std::uint32_t i = 1; i <= 10; ++i) reqs.push_back({i, proto::msg::Create{"t"}});
  SessionRules rules;
  rules.max_pipeline = 4;
  Node node;
  const Run run = drive(encode_all(reqs), {}, rules, node);
  const auto seen = decode_all(run.out, reqs);
  BOOST_REQUIRE(seen.size() == 10u);
  for (std::uint32_t i = 0; i < 10; ++i) BOOST_TEST(seen[i].id == i + 1);
  BOOST_TEST(run.answers_per_write == (std::vector<std::size_t>{4, 4, 2}));
}

BOOST_AUTO_TEST_CASE(client_auth_refuses_everything_but_ping_and_auth_until_the_secret) {
  SessionRules rules = with_secret();
  rules.client_auth = true;
  const std::vector<Sent> reqs = {
      {1, proto::msg::Ping{}},         {2, proto::msg::Create{"x"}}, {3, proto::msg::Status{}},
      {4, proto::msg::Auth{"s3cret"}}, {5, proto::msg::Create{"x"}},
  };
  Node node;
  const Run run = drive(encode_all(reqs), {}, rules, node);
  const auto seen = decode_all(run.out, reqs);
  BOOST_REQUIRE(seen.size() == 5u);
  const int unauth = static_cast<int>(ErrorCode::kUnauthenticated);
  BOOST_TEST(seen[0].code == 0);
  BOOST_TEST(seen[1].code == unauth);
  BOOST_TEST(seen[2].code == unauth);
  BOOST_TEST(seen[3].code == 0);
  BOOST_TEST(seen[4].code == 0);
  BOOST_TEST(run.executed == 2u);  // only PING and the authenticated CREATE reached the store
  BOOST_TEST(node.store->list().size() == 1u);
}

BOOST_AUTO_TEST_CASE(an_impossible_length_is_answered_once_and_the_connection_closed) {
  for (const std::uint32_t length :
       {0u, 3u, static_cast<std::uint32_t>(proto::kMaxFrameLength + 1)}) {
    // A good PING first, then the bad length, then a PING that must never be answered.
    std::string bytes = encode_all({{1, proto::msg::Ping{}}});
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(char((length >> shift) & 0xff));
    bytes += std::string(16, '\0');
    bytes += encode_all({{2, proto::msg::Ping{}}});
    for (std::size_t cut = 0; cut <= bytes.size(); cut += 3) {
      Node node;
      const Run run = drive(bytes, {cut}, {}, node);
      const auto seen = decode_all(run.out, {{1, proto::msg::Ping{}}});
      BOOST_REQUIRE(seen.size() == 2u);
      BOOST_TEST(seen[0].id == 1u);
      BOOST_TEST(seen[1].id == 0u);  // frame-level errors carry request id 0
      BOOST_TEST(
          seen[1].code == static_cast<int>(length == 0 || length == 3 ? ErrorCode::kBadFrame
                                                                      : ErrorCode::kFrameTooLarge),
          "length " << length);
      BOOST_TEST((run.closed == BinarySession::CloseReason::kMalformed));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_frame_must_be_whole_within_frame_timeout_and_silence_ends_at_idle) {
  SessionRules rules;
  rules.frame_timeout = 10s;
  rules.idle_timeout = 60s;
  const Clock::time_point t0{};
  // Half a frame at t0: the next read's deadline is the frame timeout, and past it the session
  // closes as a slow frame.
  const std::string bytes = encode_all({{1, proto::msg::Ping{}}});
  BinarySession s(rules, t0);
  auto a = s.next(t0);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST((std::get<BinarySession::Read>(a).deadline == t0 + 60s));
  auto into = s.buffer();
  std::copy_n(bytes.data(), 3, into.data());
  s.received(3, t0);
  a = s.next(t0 + 1s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST((std::get<BinarySession::Read>(a).deadline == t0 + 11s));
  // More bytes of the same frame do not move the frame's deadline.
  into = s.buffer();
  std::copy_n(bytes.data() + 3, 2, into.data());
  s.received(2, t0 + 5s);
  a = s.next(t0 + 5s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST((std::get<BinarySession::Read>(a).deadline == t0 + 11s));
  a = s.next(t0 + 11s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Close>(a));
  BOOST_TEST((std::get<BinarySession::Close>(a).reason == BinarySession::CloseReason::kSlowFrame));

  // With nothing buffered the deadline is the idle one, counted from the last answer written.
  BinarySession idle(rules, t0);
  Node node;
  a = idle.next(t0);
  into = idle.buffer();
  std::copy(bytes.begin(), bytes.end(), into.data());
  idle.received(bytes.size(), t0 + 30s);
  a = idle.next(t0 + 30s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Execute>(a));
  idle.executed(proto::msg::Pong{});
  a = idle.next(t0 + 30s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Write>(a));
  std::vector<BinarySession::Answered> answered;
  idle.encode([](Commit) { return std::optional<Refusal>{}; }, answered);
  idle.written(t0 + 40s);
  a = idle.next(t0 + 40s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST((std::get<BinarySession::Read>(a).deadline == t0 + 100s));
  a = idle.next(t0 + 100s);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Close>(a));
  BOOST_TEST((std::get<BinarySession::Close>(a).reason == BinarySession::CloseReason::kIdle));
}

BOOST_AUTO_TEST_CASE(a_write_is_held_until_its_change_is_durable_and_a_failed_one_says_so) {
  Node node(/*manual=*/true);
  const std::vector<Sent> reqs = {{1, proto::msg::Create{"x"}}, {2, proto::msg::Ping{}}};
  const std::string bytes = encode_all(reqs);
  const Clock::time_point t0{};
  BinarySession s({}, t0);
  s.next(t0);
  auto into = s.buffer();
  std::copy(bytes.begin(), bytes.end(), into.data());
  s.received(bytes.size(), t0);
  for (int i = 0; i < 2; ++i) {
    auto a = s.next(t0);
    BOOST_REQUIRE(std::holds_alternative<BinarySession::Execute>(a));
    auto answered = answer(*node.store, std::get<BinarySession::Execute>(a).request, {});
    s.executed(std::move(answered.response), answered.commit);
  }
  auto a = s.next(t0);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Write>(a));
  const Commit commit = std::get<BinarySession::Write>(a).commit;
  BOOST_TEST(!commit.empty());
  BOOST_TEST(!node.store->completed(commit));  // the CREATE is not durable: the answers wait
  // Its commit fails (a full disk): the CREATE is answered with the storage error, PING as is.
  node.disk.volume("/a").full = true;
  BOOST_REQUIRE(node.store->commit_next(1));
  BOOST_TEST(node.store->completed(commit));
  std::vector<BinarySession::Answered> answered;
  const auto seen =
      decode_all(s.encode([&](Commit c) { return node.store->outcome(c); }, answered), reqs);
  BOOST_REQUIRE(seen.size() == 2u);
  BOOST_TEST(seen[0].code == static_cast<int>(ErrorCode::kStorage));
  BOOST_TEST(seen[1].code == 0);
  BOOST_TEST(!answered[0].ok);
  BOOST_TEST(answered[1].ok);
}

// With the store's `completed`, the session reads and runs requests while a change waits for its
// fsync (an APPLY behind an APPLY is applied at once, not after the first one's fsync), and
// each answer leaves, in order, as soon as the changes up to it are durable.
BOOST_AUTO_TEST_CASE(requests_behind_a_change_run_while_it_commits_and_answers_leave_in_order) {
  Node node(/*manual=*/true);
  const Clock::time_point t0{};
  BinarySession s({}, t0);
  const std::function<bool(Commit)> completed = [&](Commit c) { return node.store->completed(c); };
  auto feed = [&](const std::vector<Sent>& reqs) {
    const std::string bytes = encode_all(reqs);
    auto a = s.next(t0, completed);
    BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
    auto into = s.buffer();
    std::copy(bytes.begin(), bytes.end(), into.data());
    s.received(bytes.size(), t0);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      a = s.next(t0, completed);
      BOOST_REQUIRE(std::holds_alternative<BinarySession::Execute>(a));
      auto answered = answer(*node.store, std::get<BinarySession::Execute>(a).request, {});
      s.executed(std::move(answered.response), answered.commit);
    }
  };
  auto write = [&](const std::vector<Sent>& reqs) {
    auto a = s.next(t0, completed);
    BOOST_REQUIRE(std::holds_alternative<BinarySession::Write>(a));
    BOOST_TEST(node.store->completed(std::get<BinarySession::Write>(a).commit));
    std::vector<BinarySession::Answered> answered;
    const auto seen =
        decode_all(s.encode([&](Commit c) { return node.store->outcome(c); }, answered), reqs);
    s.written(t0);
    return seen.size();
  };
  const std::vector<Sent> first = {{1, proto::msg::Create{"one"}}, {2, proto::msg::Ping{}}};
  const std::vector<Sent> second = {{3, proto::msg::Create{"two"}}, {4, proto::msg::List{}}};
  feed(first);
  // "one" is not durable: nothing to write, but the session reads on, holding its answers.
  auto a = s.next(t0, completed);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST(!std::get<BinarySession::Read>(a).waiting.empty());
  feed(second);  // run before "one" is durable
  BOOST_TEST(node.store->list().size() == 2u);
  BOOST_REQUIRE(node.store->commit_next(1));  // "one" durable, "two" not yet
  BOOST_TEST(write(first) == 2u, "the answers up to the durable change leave");
  a = s.next(t0, completed);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST(!std::get<BinarySession::Read>(a).waiting.empty(), "LIST waits behind \"two\"");
  BOOST_REQUIRE(node.store->commit_next(1));
  BOOST_TEST(write(second) == 2u);
  a = s.next(t0, completed);
  BOOST_REQUIRE(std::holds_alternative<BinarySession::Read>(a));
  BOOST_TEST(std::get<BinarySession::Read>(a).waiting.empty());
}

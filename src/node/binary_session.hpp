// The protocol side of one binary connection, without I/O (as Boost.Redis's reader FSM): bytes
// go in, and next() says what to do: read more by a deadline, run a request against the store,
// write the answers once a change is durable, or close. The coroutine in binary_server.cpp is a
// short loop around it; test_binary_session feeds it bytes split at every position.
//
// What it decides: framing (a frame must be whole within frame_timeout of its first byte; a
// length the codec refuses is answered once and the connection closed), authentication (AUTH,
// and which requests need it: docs/security.md), pipelining (answers leave in request order, at
// most max_pipeline per write) and the idle deadline.
//
// Threading: one connection's coroutine only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/protocol.hpp"
#include "node/requests.hpp"
#include "node/store.hpp"

namespace kv::node {

struct SessionRules {
  std::string secret;        // "" = none: FETCH, APPLY and DUMP open to anyone
  bool client_auth = false;  // every request but PING and AUTH needs the secret too
  std::size_t max_pipeline = 1024;
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds frame_timeout{std::chrono::seconds(10)};
};

class BinarySession {
 public:
  using Clock = std::chrono::steady_clock;

  // Read into buffer() until `deadline`, then call received() (or next() again on the deadline).
  // With `waiting` set, answers are held for that commit: call next() again once it completes,
  // too. Reading goes on meanwhile, so requests behind a change run while its fsync does.
  struct Read {
    Clock::time_point deadline;
    Commit waiting;
  };
  // Answer `request` from the store (WAIT included: it may take a while), then call executed().
  struct Execute {
    proto::Request request;
  };
  // Wait until the store completed `commit` (an empty one: nothing to wait for; with next()'s
  // `completed`, always completed), then call encode() and write what it returns by `deadline`,
  // then call written().
  struct Write {
    Commit commit;
    Clock::time_point deadline;
  };
  enum class CloseReason {
    kIdle,       // nothing read or written for idle_timeout
    kSlowFrame,  // a frame began but was not whole within frame_timeout
    kMalformed,  // a length the codec refuses: answered once, the stream cannot go on
  };
  struct Close {
    CloseReason reason;
  };
  // Something worth a log line and a counter; the session goes on.
  struct Notice {
    enum class Kind { kWrongSecret } kind;
  };
  using Action = std::variant<Read, Execute, Write, Close, Notice>;

  BinarySession(SessionRules rules, Clock::time_point now);

  // `completed` says whether the store completed a commit: answers then leave as soon as their
  // own changes are durable, while later requests are read and run. Without it every answer
  // waits in the Write for the last change of the round.
  Action next(Clock::time_point now, const std::function<bool(Commit)>& completed = {});

  std::span<std::uint8_t> buffer();  // where the next read goes (never empty)
  void received(std::size_t n, Clock::time_point now);
  void executed(proto::Response response, Commit commit = {});

  // The answers of this round, in order, each with what it tells the metrics. `failure` maps a
  // completed commit to the error its answer becomes when it failed (Store::outcome).
  struct Answered {
    proto::MsgType type;
    bool ok;
    Clock::time_point arrived;
  };
  template <class Outcome>
  const std::string& encode(Outcome&& failure, std::vector<Answered>& answered) {
    for (std::size_t i = 0; i < ready_; ++i) {
      auto& a = answers_[i];
      if (!a.commit.empty()) {
        if (auto e = failure(a.commit)) a.response = to_wire(std::move(*e));
      }
    }
    return encode_answers(answered);
  }
  void written(Clock::time_point now);

 private:
  struct Pending {
    std::uint32_t request_id = 0;
    proto::MsgType type = proto::MsgType::kPing;
    proto::Response response;
    Commit commit;
    Clock::time_point arrived;
  };
  const std::string& encode_answers(std::vector<Answered>& answered);
  // Answers what the session answers itself (AUTH, parse errors, refusals); false: the store's.
  bool answer_here(std::variant<proto::Request, proto::msg::Error>& parsed, Pending& p);

  SessionRules rules_;
  std::vector<std::uint8_t> in_ = std::vector<std::uint8_t>(64 * 1024);
  std::size_t have_ = 0;  // bytes in in_
  std::size_t pos_ = 0;   // of them, consumed by this round's frames
  std::deque<Pending> answers_;
  std::size_t ready_ = 0;  // of answers_, the first ones the Write out carries
  std::string out_;
  bool authed_ = false;
  bool executing_ = false;                          // an Execute is out; executed() completes it
  bool wrong_secret_ = false;                       // a Notice is due
  bool writing_ = false;                            // a Write is out; written() completes it
  bool fatal_ = false;                              // close once the answers are written
  Clock::time_point last_activity_;                 // the last bytes read or answers written
  std::optional<Clock::time_point> partial_since_;  // when the buffered partial frame began
  std::optional<proto::Request> deferred_;          // the request an Execute carries
};

}  // namespace kv::node

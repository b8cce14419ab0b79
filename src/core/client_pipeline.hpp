// The client side of a binary-protocol connection, without I/O: requests get ids in the order
// they are sent, the bytes read go in, and answers come out matched to their requests (a node
// answers in order). NodeClient is the Asio loop around it; test_protocol feeds it bytes split at
// every position.
//
// Threading: one connection's reader and writer, on one executor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "core/protocol.hpp"

namespace kv {

class ClientPipeline {
 public:
  // Encodes `req` after what `out` holds, with the next request id, which it returns.
  std::uint32_t send(std::string& out, const proto::Request& req);

  std::span<std::uint8_t> buffer();  // where the next read goes (never empty)

  struct Answer {
    std::uint32_t id;          // the request it answers
    proto::Response response;  // may be a proto::msg::Error
  };
  // Why the connection cannot go on: what came is not a frame (kNotAFrame: unread() holds it,
  // answered() says whether anything was answered before), an answer nothing asked for, or one
  // out of order.
  enum class Failure { kNone, kNotAFrame, kUnsolicited, kOutOfOrder };
  // `n` bytes arrived in buffer(): appends the answers they complete to `answers`.
  Failure received(std::size_t n, std::vector<Answer>& answers);

  std::size_t in_flight() const { return inflight_.size(); }
  bool answered() const { return answered_; }
  std::span<const std::uint8_t> unread() const { return {in_.data(), have_}; }

 private:
  struct Sent {
    std::uint32_t id;
    proto::MsgType type;
  };
  std::uint32_t next_id_ = 1;
  std::deque<Sent> inflight_;  // in the order the requests were sent
  std::vector<std::uint8_t> in_ = std::vector<std::uint8_t>(64 * 1024);
  std::size_t have_ = 0;
  bool answered_ = false;
};

}  // namespace kv

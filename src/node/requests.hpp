// How a node answers one request from its store: pure dispatch, no I/O. The binary server
// (binary_server.cpp) and the deterministic simulator (test/sim) both answer through it. AUTH and
// WAIT are the session's business and are not answered here.
#pragma once

#include <cstdint>

#include "common/protocol.hpp"

namespace kv::node {

class Store;

// What STATUS reports beside the store's own state.
struct ServerFacts {
  std::uint64_t http_port = 0;
  std::uint64_t subscribers = 0;
};

struct Answer {
  proto::Response response;
  // The change the request made (0: none). Its answer may go out only once the store has
  // completed this ticket, and must become the store's storage error if the ticket failed.
  std::uint64_t ticket = 0;
};

Answer answer(Store& store, proto::Request& request, const ServerFacts& facts);

}  // namespace kv::node

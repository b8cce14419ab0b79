// How a node answers one request from its store: pure dispatch, no I/O. The binary server
// (binary_server.cpp) and the deterministic simulator (test/sim) both answer through it. AUTH and
// WAIT are the session's business and are not answered here.
#pragma once

#include <cstdint>

#include "core/protocol.hpp"
#include "node/store.hpp"

namespace kv::node {

// What STATUS reports beside the store's own state.
struct ServerFacts {
  std::uint64_t http_port = 0;
  std::uint64_t subscribers = 0;
};

struct Answer {
  proto::Response response;
  // The change the request made (empty: none), or for a DUMP the latest change it read. Its
  // answer may go out only once the store has completed it, and becomes Store::outcome's error
  // if its commit failed.
  Commit commit;
};

Answer answer(Store& store, proto::Request& request, const ServerFacts& facts);

// The ERROR answer that says what the store refused.
inline proto::msg::Error to_wire(Refusal r) {
  return proto::msg::Error{r.code, std::move(r.message)};
}

}  // namespace kv::node

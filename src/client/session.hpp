// Runs kvcli commands against the nodes: routing (round-robin, random or fixed), failing over
// to the next node when one is down, and printing results for people or as JSON.
#pragma once

#include <chrono>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "client/commands.hpp"
#include "net/tls.hpp"

namespace kv::cli {

struct SessionOptions {
  std::vector<std::string> nodes;  // host:port of each node's binary protocol
  std::string route = "rr";        // rr | random | N (1-based)
  bool json = false;               // one JSON object per command on one line
  bool color = false;              // ANSI colour in human output (a terminal, NO_COLOR unset)
  bool session = true;             // read-your-writes (docs/sync.md, "Sessions")
  std::chrono::milliseconds session_wait{2000};  // how long a read waits for the session
  std::chrono::milliseconds timeout{3000};
  std::string secret;  // the cluster secret, for watch and for nodes that run --client-auth
  std::shared_ptr<tls::Context> tls;  // a client context: TLS and wss to every node; or nullptr
};

class Session {
 public:
  explicit Session(SessionOptions options);
  ~Session();

  // Runs one command; results go to `out`, human-readable errors and notes to `err` (in JSON
  // mode everything goes to `out`). Returns false when the command failed.
  bool run(const Command& command, std::ostream& out, std::ostream& err);

  // Validates and sets the routing mode; returns an error sentence, or "" on success.
  std::string set_route(const std::string& mode);

  // Where round-robin routing goes next (kept across one-shot invocations).
  std::size_t rr_position() const;
  void set_rr_position(std::size_t next);

  // Item ids seen in results so far, for completion.
  const std::vector<std::string>& known_ids() const;

  // The session token (what this session has written, per node), as text to keep between
  // one-shot invocations; load_token() ignores text from another node list.
  std::string save_token() const;
  void load_token(const std::string& text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::cli

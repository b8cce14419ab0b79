// Fuzzes the client's answer matching (src/core/client_pipeline.cpp), which reads whatever a node
// (or anything listening on its port) sends back. The first input byte says how many requests
// are in flight (1 to 16, of the types the next bytes name); the rest is what comes back, fed in
// reads whose sizes the input also picks.
//
// Properties, beyond "no crash, no sanitizer report":
//  - every answer names the oldest request still in flight, in the order they were sent;
//  - answers plus requests still in flight are always the requests sent;
//  - a failure ends the connection: nothing is answered after it.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/client_pipeline.hpp"
#include "fuzz_check.hpp"

namespace proto = kv::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t count = 1 + data[0] % 16;
  std::size_t pos = 1;
  kv::ClientPipeline p;
  std::string out;
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < count && pos < size; ++i, ++pos) {
    switch (data[pos] % 4) {
      case 0:
        ids.push_back(p.send(out, proto::msg::Ping{}));
        break;
      case 1:
        ids.push_back(p.send(out, proto::msg::Get{"1a"}));
        break;
      case 2:
        ids.push_back(p.send(out, proto::msg::Fetch{0, 10}));
        break;
      default:
        ids.push_back(p.send(out, proto::msg::List{}));
        break;
    }
  }
  std::size_t answered = 0;
  std::vector<kv::ClientPipeline::Answer> answers;
  while (pos < size) {
    const std::size_t chunk = 1 + data[pos++] % 64;
    auto into = p.buffer();
    KV_FUZZ_CHECK(!into.empty());
    const std::size_t n = std::min({chunk, size - pos, into.size()});
    std::copy_n(data + pos, n, into.data());
    pos += n;
    answers.clear();
    const auto failure = p.received(n, answers);
    for (const auto& a : answers) {
      KV_FUZZ_CHECK(answered < ids.size());
      KV_FUZZ_CHECK(a.id == ids[answered]);
      ++answered;
    }
    KV_FUZZ_CHECK(answered + p.in_flight() == ids.size());
    if (failure != kv::ClientPipeline::Failure::kNone) break;
  }
  return 0;
}

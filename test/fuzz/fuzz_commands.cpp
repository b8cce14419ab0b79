// Fuzzes kvcli's command parser (src/client/commands.cpp) on one line of input.
//
// Properties: parse_line never crashes; it is parse_command over split_words; an error always
// says something; a command's required words are present.
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "client/commands.hpp"
#include "fuzz_check.hpp"

namespace cli = kv::cli;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const auto parsed = cli::parse_line(line);
  const auto words = cli::split_words(line);
  for (const auto& w : words) KV_FUZZ_CHECK(w.size() <= line.size());

  if (const auto* e = std::get_if<cli::ParseError>(&parsed)) {
    KV_FUZZ_CHECK(!e->message.empty());
    return 0;
  }
  const auto& cmd = std::get<cli::Command>(parsed);
  KV_FUZZ_CHECK(!words.empty() || std::holds_alternative<cli::cmd::Empty>(cmd));
  if (std::holds_alternative<cli::cmd::Create>(cmd)) KV_FUZZ_CHECK(words.size() >= 2);
  if (const auto* u = std::get_if<cli::cmd::Update>(&cmd)) {
    KV_FUZZ_CHECK(u->completed.has_value() != u->title.has_value());
  }
  if (const auto* w = std::get_if<cli::cmd::Watch>(&cmd)) {
    KV_FUZZ_CHECK(!w->node || *w->node > 0);
  }
  // Help on any topic answers with text.
  if (const auto* h = std::get_if<cli::cmd::Help>(&cmd)) {
    KV_FUZZ_CHECK(!cli::help_text(h->topic).empty());
  }
  return 0;
}

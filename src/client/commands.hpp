// kvcli's command language: parsing a line into a command is pure code, tested on its own.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kv::cli {

namespace cmd {
struct Create {
  std::string title;
};
struct List {};
struct Get {
  std::string id;
};
struct Update {
  std::string id;
  std::optional<bool> completed;
  std::optional<std::string> title;
};
struct Delete {
  std::string id;
};
struct Watch {
  std::optional<std::size_t> node;  // 1-based; all nodes when empty
  std::optional<std::string> item;  // only this item's changes
};
// Read-your-writes: on, off, or (empty) show the session.
struct Session {
  std::string mode;
};
struct Nodes {};
struct Route {
  std::string mode;  // rr | random | N
};
struct Help {
  std::string topic;
};
struct Quit {};
struct Empty {};  // a blank line or a comment
}  // namespace cmd

using Command =
    std::variant<cmd::Create, cmd::List, cmd::Get, cmd::Update, cmd::Delete, cmd::Watch, cmd::Nodes,
                 cmd::Route, cmd::Session, cmd::Help, cmd::Quit, cmd::Empty>;

struct ParseError {
  std::string message;  // a sentence that says what to type instead
};

std::variant<Command, ParseError> parse_command(const std::vector<std::string>& words);
std::variant<Command, ParseError> parse_line(std::string_view line);

// Splits on spaces; "double quotes" group words.
std::vector<std::string> split_words(std::string_view line);

// `help` with no topic, or with a command name.
std::string help_text(std::string_view topic);

// The command names, for completion.
const std::vector<std::string>& command_names();

}  // namespace kv::cli

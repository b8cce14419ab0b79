#include "client/commands.hpp"

#include <charconv>

namespace kv::cli {

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_quotes = false, have = false;
  for (char c : line) {
    if (c == '"') {
      in_quotes = !in_quotes;
      have = true;
    } else if ((c == ' ' || c == '\t') && !in_quotes) {
      if (have) words.push_back(std::move(cur));
      cur.clear();
      have = false;
    } else {
      cur.push_back(c);
      have = true;
    }
  }
  if (have) words.push_back(std::move(cur));
  return words;
}

namespace {
std::string join(const std::vector<std::string>& w, std::size_t from) {
  std::string out;
  for (std::size_t i = from; i < w.size(); ++i) {
    if (i > from) out += ' ';
    out += w[i];
  }
  return out;
}

ParseError usage(std::string_view cmd) {
  return ParseError{"usage: " + help_text(cmd).substr(0, help_text(cmd).find('\n'))};
}
}  // namespace

const std::vector<std::string>& command_names() {
  static const std::vector<std::string> names{"create",  "list",  "get",   "update",
                                              "delete",  "watch", "nodes", "route",
                                              "session", "help",  "quit"};
  return names;
}

std::string help_text(std::string_view topic) {
  if (topic == "create") return "create TITLE...\n  Create an item; prints its id and version.\n";
  if (topic == "list") return "list\n  List the live items on the node the command goes to.\n";
  if (topic == "get") return "get ID\n  Show one item.\n";
  if (topic == "update") {
    return "update ID complete|incomplete  or  update ID title NEW TITLE...\n"
           "  Mark an item done or not done, or rename it.\n";
  }
  if (topic == "delete") return "delete ID\n  Delete an item everywhere. Deletes are final.\n";
  if (topic == "watch") {
    return "watch [N] [ID]\n  Print change notifications from every node (or node N), of every "
           "item (or item ID), until Ctrl-C.\n  Examples: watch   watch 2   watch 3a   watch 2 "
           "3a\n";
  }
  if (topic == "nodes") {
    return "nodes\n  Show each node: whether it answers, its version, its items, how many stamps "
           "it is\n  behind the syncer, local changes not yet synced, and its WebSocket "
           "subscribers.\n";
  }
  if (topic == "session") {
    return "session [on|off]\n  Read-your-writes. On (the default), a read waits briefly until "
           "the node it goes to\n  has your earlier writes, and says so if it could not. Off "
           "shows the seed's\n  behaviour: a read on another node may miss a write made a "
           "moment ago.\n  Without an argument, shows what the session carries.\n";
  }
  if (topic == "route") {
    return "route rr|random|N\n  Send commands to each node in turn, to a random node, or always "
           "to "
           "node N.\n";
  }
  if (topic == "help") return "help [COMMAND]\n  Show all commands, or one in detail.\n";
  if (topic == "quit" || topic == "exit") return "quit\n  Leave the shell (Ctrl-D works too).\n";
  return "Commands:\n"
         "  create TITLE...                 create an item\n"
         "  list                            list items\n"
         "  get ID                          show one item\n"
         "  update ID complete|incomplete   mark done / not done\n"
         "  update ID title NEW TITLE...    rename\n"
         "  delete ID                       delete an item\n"
         "  watch [N] [ID]                  live change notifications (Ctrl-C stops)\n"
         "  nodes                           node status, sync lag, subscribers\n"
         "  route rr|random|N               how commands pick a node\n"
         "  session [on|off]                read-your-writes across nodes (on by default)\n"
         "  help [COMMAND]                  this text, or one command in detail\n"
         "  quit                            leave the shell\n"
         "Ids look like 3b: a number and the name of the node that created the item.\n";
}

std::variant<Command, ParseError> parse_command(const std::vector<std::string>& w) {
  if (w.empty() || w[0].starts_with("#")) return cmd::Empty{};
  const std::string& c = w[0];
  if (c == "create") {
    if (w.size() < 2) return usage("create");
    return cmd::Create{join(w, 1)};
  }
  if (c == "list" || c == "ls") {
    if (w.size() != 1) return usage("list");
    return cmd::List{};
  }
  if (c == "get") {
    if (w.size() != 2) return usage("get");
    return cmd::Get{w[1]};
  }
  if (c == "update") {
    if (w.size() < 3) return usage("update");
    if (w[2] == "complete" || w[2] == "completed" || w[2] == "done") {
      if (w.size() != 3) return usage("update");
      return cmd::Update{w[1], true, std::nullopt};
    }
    if (w[2] == "incomplete" || w[2] == "undone") {
      if (w.size() != 3) return usage("update");
      return cmd::Update{w[1], false, std::nullopt};
    }
    if (w[2] == "title") {
      if (w.size() < 4) return usage("update");
      return cmd::Update{w[1], std::nullopt, join(w, 3)};
    }
    return ParseError{"'" + w[2] +
                      "' is not something update can change; use complete, "
                      "incomplete or title NEW TITLE"};
  }
  if (c == "delete" || c == "rm") {
    if (w.size() != 2) return usage("delete");
    return cmd::Delete{w[1]};
  }
  if (c == "watch") {
    // A node number is all digits; an item id is digits and a node name (3a).
    cmd::Watch watch;
    for (std::size_t i = 1; i < w.size(); ++i) {
      std::size_t n = 0;
      auto [p, ec] = std::from_chars(w[i].data(), w[i].data() + w[i].size(), n);
      if (ec == std::errc{} && p == w[i].data() + w[i].size()) {
        if (n == 0 || watch.node || watch.item) return usage("watch");
        watch.node = n;
      } else if (ec == std::errc{} && !watch.item) {
        watch.item = w[i];
      } else {
        return usage("watch");
      }
    }
    return watch;
  }
  if (c == "session") {
    if (w.size() > 2 || (w.size() == 2 && w[1] != "on" && w[1] != "off")) {
      return usage("session");
    }
    return cmd::Session{w.size() == 2 ? w[1] : ""};
  }
  if (c == "nodes") return cmd::Nodes{};
  if (c == "route") {
    if (w.size() != 2) return usage("route");
    return cmd::Route{w[1]};
  }
  if (c == "help" || c == "?") return cmd::Help{w.size() > 1 ? w[1] : ""};
  if (c == "quit" || c == "exit") return cmd::Quit{};
  return ParseError{"unknown command '" + c + "'; type help to see the commands"};
}

std::variant<Command, ParseError> parse_line(std::string_view line) {
  return parse_command(split_words(line));
}

}  // namespace kv::cli

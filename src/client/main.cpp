// kvcli: the kvstore shell. Interactive with line editing and history when standard input is a
// terminal, a script (one command a line) when it is not, or one command from the arguments.
#include <editline/readline.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "client/commands.hpp"
#include "client/session.hpp"
#include "core/command_line.hpp"
#include "core/describe.hpp"
#include "core/secret.hpp"
#include "net/node_client.hpp"
#include "net/tls.hpp"

namespace po = boost::program_options;
using namespace kv::cli;

namespace {

Session* g_session = nullptr;  // for the completion callback, which takes no context

char* complete_word(const char* text, int state) {
  static std::vector<std::string> matches;
  static std::size_t index;
  if (state == 0) {
    matches.clear();
    index = 0;
    const bool first_word =
        rl_point == static_cast<int>(std::strlen(text)) ||
        std::string_view(rl_line_buffer, rl_point - std::strlen(text)).find_first_not_of(' ') ==
            std::string_view::npos;
    const std::vector<std::string>& pool = first_word ? command_names() : g_session->known_ids();
    for (const auto& w : pool) {
      if (w.starts_with(text)) matches.push_back(w);
    }
  }
  if (index < matches.size()) return strdup(matches[index++].c_str());
  return nullptr;
}

char** complete(const char* text, int, int) {
  rl_attempted_completion_over = 1;
  return rl_completion_matches(text, complete_word);
}

std::string home_file(const char* name) {
  const char* home = std::getenv("HOME");
  return home ? std::string(home) + "/" + name : std::string();
}

// One-shot commands continue the round-robin where the previous one left it, so consecutive
// `kvcli create` / `kvcli list` alternate between the nodes as in the seed.
std::size_t load_rr_position() {
  std::ifstream f(home_file(".kvcli_rr"));
  std::size_t n = 0;
  f >> n;
  return n;
}
void save_rr_position(std::size_t n) {
  const std::string path = home_file(".kvcli_rr");
  if (path.empty()) return;
  std::ofstream(path) << n << "\n";
}

// The read-your-writes token lives in ~/.kvcli_session between invocations, so `kvcli create`
// followed by `kvcli list` on the other node sees the item.
void load_token(Session& session) {
  std::ifstream f(home_file(".kvcli_session"));
  std::stringstream text;
  text << f.rdbuf();
  session.load_token(text.str());
}
void save_token(const Session& session) {
  const std::string path = home_file(".kvcli_session");
  if (path.empty()) return;
  std::ofstream(path) << session.save_token();
}

// Colour only for a person at a terminal who has not asked for none (https://no-color.org).
bool want_color(bool json) {
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  return !json && isatty(STDOUT_FILENO) && !(no_color && *no_color) &&
         !(term && std::string_view(term) == "dumb");
}

int run_shell(Session& session) {
  g_session = &session;
  rl_attempted_completion_function = complete;
  const std::string hist = home_file(".kvcli_history");
  using_history();
  stifle_history(1000);
  if (!hist.empty()) read_history(hist.c_str());
  std::cout << "kvcli: type help for the commands, quit or Ctrl-D to leave" << std::endl;
  for (;;) {
    char* raw = readline("kv> ");
    if (!raw) break;
    std::string line(raw);
    std::free(raw);
    if (line.find_first_not_of(' ') != std::string::npos) add_history(line.c_str());
    auto parsed = parse_line(line);
    if (auto* e = std::get_if<ParseError>(&parsed)) {
      std::cerr << e->message << std::endl;
      continue;
    }
    const auto& c = std::get<Command>(parsed);
    if (std::holds_alternative<cmd::Quit>(c)) break;
    session.run(c, std::cout, std::cerr);
  }
  if (!hist.empty()) write_history(hist.c_str());
  return 0;
}

int run_script(Session& session, bool json) {
  bool all_ok = true;
  std::string line;
  while (std::getline(std::cin, line)) {
    auto parsed = parse_line(line);
    if (auto* e = std::get_if<ParseError>(&parsed)) {
      if (json) {
        std::cout << R"({"ok":false,"node":"","error":)"
                  << boost::json::serialize(boost::json::string(e->message)) << "}" << std::endl;
      } else {
        std::cerr << e->message << std::endl;
      }
      all_ok = false;
      continue;
    }
    const auto& c = std::get<Command>(parsed);
    if (std::holds_alternative<cmd::Quit>(c)) break;
    all_ok = session.run(c, std::cout, std::cerr) && all_ok;
  }
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string nodes, route, secret_file, tls_ca;
  unsigned timeout_ms = 3000, session_wait_ms = 2000;
  po::options_description opts(
      "kvcli: the kvstore shell\n\n"
      "Usage:\n"
      "  kvcli [options]                 interactive shell (script mode when stdin is not a tty)\n"
      "  kvcli [options] COMMAND ARGS    run one command, e.g. kvcli create Buy milk\n\n"
      "Options");
  // clang-format off
  opts.add_options()
    ("help,h", "show this help and the commands")
    ("nodes", po::value(&nodes)->default_value("127.0.0.1:7001,127.0.0.1:7002"),
     "comma-separated binary-protocol addresses of the nodes")
    ("route", po::value(&route)->default_value("rr"),
     "rr: each command to the next node in turn; random; or N: always node N")
    ("json", "print one JSON object per command on one line")
    ("secret-file", po::value(&secret_file),
     "file holding the cluster secret (KV_SECRET works too): needed for watch, and for every "
     "command on nodes that run --client-auth")
    ("tls-ca", po::value(&tls_ca),
     "PEM file of the CA that signed the nodes' certificates: connect over TLS (and wss for "
     "watch), verifying each node's certificate and the address it names")
    ("no-session", "reads do not wait for this session's writes (the seed's behaviour)")
    ("session-wait", po::value(&session_wait_ms)->default_value(2000),
     "how long a read waits, in ms, for a node to apply this session's writes")
    ("timeout", po::value(&timeout_ms)->default_value(3000), "per-request deadline in ms");
  // clang-format on

  // Options come first; the first word that is not an option starts the command. Which ones
  // take a value (as the next word) the table above says.
  const auto takes_value = [&opts](const std::string& arg) {
    if (arg.rfind("--", 0) != 0 || arg.find('=') != std::string::npos) return false;
    const auto* d = opts.find_nothrow(arg.substr(2), false);
    return d != nullptr && d->semantic()->max_tokens() > 0;
  };
  int split = 1;
  while (split < argc && std::strncmp(argv[split], "-", 1) == 0) {
    split += takes_value(argv[split]) ? 2 : 1;
  }
  split = std::min(split, argc);
  po::variables_map vm;
  SessionOptions so;
  try {
    po::store(po::parse_command_line(split, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n" << help_text("");
      return 0;
    }
    po::notify(vm);
    so.nodes = kv::command_line::node_list(nodes);
    so.route = route;
    so.json = vm.count("json") > 0;
    so.timeout = std::chrono::milliseconds(timeout_ms);
    so.session = vm.count("no-session") == 0;
    so.session_wait = std::chrono::milliseconds(session_wait_ms);
    so.color = want_color(so.json);
    so.secret = kv::secret::load(secret_file);
    if (!tls_ca.empty()) so.tls = kv::tls::client_context(tls_ca);
  } catch (const std::exception& e) {
    std::cerr << "kvcli: " << e.what() << "\nTry 'kvcli --help'.\n";
    return 2;
  }

  try {
    Session session(so);
    if (split < argc) {
      std::vector<std::string> words(argv + split, argv + argc);
      auto parsed = parse_command(words);
      if (auto* e = std::get_if<ParseError>(&parsed)) {
        std::cerr << "kvcli: " << e->message << std::endl;
        return 2;
      }
      if (so.route == "rr") session.set_rr_position(load_rr_position());
      load_token(session);
      const bool ok = session.run(std::get<Command>(parsed), std::cout, std::cerr);
      if (so.route == "rr") save_rr_position(session.rr_position());
      save_token(session);
      return ok ? 0 : 1;
    }
    load_token(session);
    const int code = isatty(STDIN_FILENO) ? run_shell(session) : run_script(session, so.json);
    save_token(session);
    return code;
  } catch (const std::exception& e) {
    std::cerr << "kvcli: " << kv::describe(e) << std::endl;
    return 2;
  }
}

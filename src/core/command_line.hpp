// Command-line handling shared by the binaries: --help, one-sentence errors with exit code 2,
// and the flags more than one binary takes. Header-only: each binary links program_options.
#pragma once

#include <boost/algorithm/string/classification.hpp>
#include <boost/algorithm/string/split.hpp>
#include <boost/program_options.hpp>

#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/address.hpp"

namespace kv::command_line {

// Parses argv into `vm`, then runs `check` for what one flag cannot say alone. Returns the exit
// code to leave with (0 after --help, 2 after an error, printed as "PROGRAM: sentence"), or
// nullopt to go on.
inline std::optional<int> parse(int argc, char** argv,
                                const boost::program_options::options_description& opts,
                                boost::program_options::variables_map& vm, const char* program,
                                const std::function<void()>& check = {}) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return 0;
    }
    po::notify(vm);
    if (check) check();
    return std::nullopt;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\nTry '" << program << " --help'.\n";
    return 2;
  }
}

// "h:p,h:p" -> addresses, each checked; throws std::invalid_argument.
inline std::vector<std::string> node_list(const std::string& text) {
  std::vector<std::string> nodes;
  boost::split(nodes, text, boost::is_any_of(","), boost::token_compress_on);
  std::erase(nodes, std::string{});
  if (nodes.empty()) throw std::invalid_argument("--nodes names no node");
  for (const auto& n : nodes) parse_host_port(n);
  return nodes;
}

// --durability: true for "sync", false for "async"; throws otherwise.
inline bool sync_durability(const std::string& text) {
  if (text != "sync" && text != "async") {
    throw std::invalid_argument("--durability must be sync or async");
  }
  return text == "sync";
}

}  // namespace kv::command_line

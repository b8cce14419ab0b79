// Starting the real binaries for whole-cluster tests: nodes and the syncer on 127.0.0.1 with
// ephemeral ports (each reports its ports on its "ready" line), kvcli runs with a deadline,
// and waits that poll a condition until a deadline instead of sleeping a fixed time.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace kv::test {

using namespace std::chrono_literals;

std::filesystem::path bin_dir();  // from KV_BIN_DIR, set by CTest

// A child process we started; ended by PID in the destructor if still running.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::filesystem::path& log_file,
          const std::string& stdin_text = "", bool capture_stdout = true);
  ~Process();
  Process(const Process&) = delete;

  int pid() const { return pid_; }
  // Reads stdout until a line containing `text` appears; throws on deadline or exit.
  std::string wait_for_line(const std::string& text, std::chrono::milliseconds deadline = 20s);
  void signal(int sig);
  void kill9();
  // Waits for the exit; returns the exit code (128+signal if killed). Throws on deadline.
  int wait(std::chrono::milliseconds deadline = 20s);
  bool running();
  std::string read_all(std::chrono::milliseconds deadline = 20s);  // stdout until EOF
  // Every line wait_for_line() has read so far, the one it returned included: a test that
  // waits for one line can still check all the others.
  const std::vector<std::string>& lines_passed() const { return passed_; }
  std::string log_tail() const;

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::thread stdin_writer_;  // feeds standard input while we read standard output
  std::string buffered_;
  std::vector<std::string> passed_;
  std::optional<int> status_;
  std::filesystem::path log_;
};

struct CliResult {
  int code = -1;
  std::string out;
};

// Runs kvcli with `args` (and `stdin_text` on standard input) and returns its exit code and
// standard output. Fails the test if it does not finish within the deadline.
CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "",
                  std::chrono::milliseconds deadline = 20s);
// The same for another of our binaries (e.g. "kvsync" for its subcommands).
CliResult run_binary(const std::string& binary, const std::vector<std::string>& args,
                     const std::string& stdin_text = "", std::chrono::milliseconds deadline = 20s);

// Polls `cond` every few milliseconds until it holds or the deadline passes.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds deadline = 20s);

// A blocking TCP connection to 127.0.0.1:port whose reads time out after `read_timeout_s`,
// with a receive buffer of `receive_buffer` bytes if given. Returns the fd, or -1.
int connect_loopback(std::uint16_t port, int read_timeout_s, int receive_buffer = 0);
// One read from a socket made by connect_loopback: data (appended to `into`), the peer's close
// (EOF or reset), or nothing before the read timeout. A node that goes silent must never pass
// for one that closed the connection.
enum class ReadResult { kData, kClosed, kTimedOut };
ReadResult read_some(int fd, std::string& into);

// Sends a WebSocket upgrade for `target` on `fd` and reads the response head. Returns what came
// after it (the first frames), or nullopt if the node did not switch protocols.
std::optional<std::string> ws_handshake(int fd, const std::string& target);

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string headers;
  std::string body;
};
// GET http://127.0.0.1:port/target with Connection: close; bounded by a 10 s read timeout.
HttpReply http_get(std::uint16_t port, const std::string& target);

// Runs `argv` on a pseudo-terminal (so it sees a tty on stdin and stdout) with `env` added,
// types `input` (a string of keystrokes, written in chunks as the program echoes), and returns
// everything it printed until it exits. Each element of `input` is written once the output
// printed since the previous one was typed contains the matching element of `wait_for` (e.g.
// the next prompt; empty: at once). Bounded by `deadline`.
std::string run_on_pty(const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, std::string>>& env,
                       const std::vector<std::string>& input,
                       const std::vector<std::string>& wait_for,
                       std::chrono::milliseconds deadline = 20s);

// Small helpers the cluster tests share.
std::string file_text(const std::filesystem::path& p);
// `n` lines "CMD PREFIX0", "CMD PREFIX1", ...: a kvcli script.
std::string script(const std::string& cmd, int n, const std::string& prefix);
// "host:port" from a binary's ready line ("kvnode a ready binary=127.0.0.1:P http=...").
std::string binary_address(const std::string& ready_line);
// Runs `poke` until `watcher` prints a line containing `text` (a subscription that is still
// coming up misses the first pokes).
bool poke_until_seen(Process& watcher, const std::string& text, const std::function<void()>& poke);

struct NodeInfo {
  std::string name;
  std::string binary;  // host:port
  std::uint16_t binary_port = 0;
  std::uint16_t http_port = 0;
  std::unique_ptr<Process> proc;
};

// Arguments added to every process a Cluster starts (e.g. TLS flags).
struct ClusterArgs {
  std::vector<std::string> node;    // each kvnode
  std::vector<std::string> syncer;  // kvsync
  std::vector<std::string> cli;     // kvcli through Cluster::cli (so items_on, wait_converged)
};

class Cluster {
 public:
  explicit Cluster(std::size_t nodes, bool with_syncer = true,
                   std::vector<std::string> extra_node_args = {});
  Cluster(std::size_t nodes, ClusterArgs args, bool with_syncer = true);
  ~Cluster();

  void start_node(std::size_t i);  // (re)starts node i on its previous ports, if any
  void stop_node(std::size_t i, bool kill9 = false);
  // Starts kvsync with every node configured, or only `only` (node indexes), and `extra` flags;
  // waits for "kvsync ready" unless `wait_ready` is false.
  void start_syncer(const std::vector<std::size_t>& only = {},
                    const std::vector<std::string>& extra = {}, bool wait_ready = true);
  void stop_syncer(bool kill9 = false);

  std::string nodes_arg(const std::vector<std::size_t>& only = {}) const;  // "h:p1,h:p2,..."
  NodeInfo& node(std::size_t i) { return nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }
  const std::filesystem::path& dir() const { return dir_.path(); }
  Process* syncer() { return syncer_.get(); }
  std::uint16_t syncer_http_port() const { return syncer_http_port_; }

  // kvcli against this cluster.
  CliResult cli(std::vector<std::string> args, const std::string& stdin_text = "");
  // `list --json` on node i (1-based route), parsed to "id v<version> title completed" lines.
  std::vector<std::string> items_on(std::size_t i);
  // Waits until every node lists the same items with the same versions, and returns them.
  std::vector<std::string> wait_converged(std::chrono::milliseconds deadline = 30s);

 private:
  TempDir dir_;
  std::vector<std::string> extra_node_args_;
  std::vector<std::string> extra_syncer_args_;
  std::vector<std::string> extra_cli_args_;
  bool syncer_expected_ = true;  // false: nodes run --standalone
  std::vector<NodeInfo> nodes_;
  std::unique_ptr<Process> syncer_;
  std::uint16_t syncer_http_port_ = 0;  // chosen by the first start, kept for restarts
};

}  // namespace kv::test

#include "cluster.hpp"

#include <algorithm>
#include <cerrno>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace kv::test {

std::filesystem::path bin_dir() {
  const char* d = std::getenv("KV_BIN_DIR");
  if (!d) throw std::runtime_error("KV_BIN_DIR is not set (run the tests through ctest)");
  return d;
}

namespace {
using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point end) {
  return static_cast<int>(std::max<long>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count()));
}
}  // namespace

Process::Process(std::vector<std::string> argv, const std::filesystem::path& log_file,
                 const std::string& stdin_text, bool capture_stdout)
    : log_(log_file) {
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test with it
  int out[2] = {-1, -1};
  int in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  // Room for a long script's output while the test is busy elsewhere (a writer that blocks on a
  // full pipe would stop writing); best effort, the default is 64 KiB.
  ::fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int err_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // The child dies with the test, even if the test crashes before its destructors run.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(in[0], 0);
    if (capture_stdout) {
      dup2(out[1], 1);
    } else {
      const int null = ::open("/dev/null", O_WRONLY);
      dup2(null, 1);
    }
    if (err_fd >= 0) dup2(err_fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  const int rc = pid_ < 0 ? errno : 0;
  if (err_fd >= 0) ::close(err_fd);
  close(out[1]);
  close(in[0]);
  if (rc != 0) {
    close(out[0]);
    close(in[1]);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  out_fd_ = out[0];
  // Standard input is written by a thread, so a large script cannot deadlock against output
  // that nobody reads yet.
  stdin_writer_ = std::thread([fd = in[1], text = stdin_text] {
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
      if (w <= 0) break;  // the child exited
      done += static_cast<std::size_t>(w);
    }
    close(fd);
  });
}

Process::~Process() {
  if (running()) {
    kill9();
    try {
      wait(10s);
    } catch (...) {
    }
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (stdin_writer_.joinable()) stdin_writer_.join();
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

void Process::kill9() {
  signal(SIGKILL);
}

int Process::wait(std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  while (!status_) {
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      break;
    }
    if (Clock::now() > end) throw std::runtime_error("process did not exit in time");
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(*status_)) return WEXITSTATUS(*status_);
  return 128 + WTERMSIG(*status_);
}

std::string Process::wait_for_line(const std::string& text, std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  for (;;) {
    for (auto nl = buffered_.find('\n'); nl != std::string::npos; nl = buffered_.find('\n')) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      passed_.push_back(line);
      if (line.find(text) != std::string::npos) return line;
    }
    pollfd p{out_fd_, POLLIN, 0};
    const int r = poll(&p, 1, std::min(remaining_ms(end), 100));
    if (r > 0) {
      char buf[4096];
      const ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n <= 0)
        throw std::runtime_error("process exited before printing '" + text + "'\n" + log_tail());
      buffered_.append(buf, n);
    } else if (Clock::now() >= end) {
      throw std::runtime_error("no line '" + text + "' before the deadline\n" + log_tail());
    }
  }
}

std::string Process::read_all(std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  std::string out = std::move(buffered_);
  buffered_.clear();
  for (;;) {
    pollfd p{out_fd_, POLLIN, 0};
    const int r = poll(&p, 1, std::min(remaining_ms(end), 100));
    if (r > 0) {
      char buf[4096];
      const ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, n);
    } else if (Clock::now() >= end) {
      throw std::runtime_error("output did not end before the deadline");
    }
  }
}

std::string Process::log_tail() const {
  std::ifstream f(log_);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.size() > 4000) s = s.substr(s.size() - 4000);
  return "--- " + log_.string() + " ---\n" + s;
}

CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text,
                  std::chrono::milliseconds deadline) {
  return run_binary("kvcli", args, stdin_text, deadline);
}

CliResult run_binary(const std::string& binary, const std::vector<std::string>& args,
                     const std::string& stdin_text, std::chrono::milliseconds deadline) {
  std::vector<std::string> argv{(bin_dir() / binary).string()};
  argv.insert(argv.end(), args.begin(), args.end());
  static int counter = 0;
  const auto log = std::filesystem::temp_directory_path() /
                   ("kvcli-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  CliResult r;
  {
    Process p(argv, log, stdin_text);
    r.out = p.read_all(deadline);
    r.code = p.wait(deadline);
  }
  std::error_code ec;
  std::filesystem::remove(log, ec);
  return r;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  const auto end = Clock::now() + deadline;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(10ms);
  }
}

int connect_loopback(std::uint16_t port, int read_timeout_s, int receive_buffer) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (receive_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  timeval tv{read_timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

ReadResult read_some(int fd, std::string& into) {
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    into.append(buf, static_cast<std::size_t>(n));
    return ReadResult::kData;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ReadResult::kTimedOut;
  return ReadResult::kClosed;
}

std::optional<std::string> ws_handshake(int fd, const std::string& target) {
  const std::string upgrade =
      "GET " + target +
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  if (::write(fd, upgrade.data(), upgrade.size()) != static_cast<ssize_t>(upgrade.size())) {
    return std::nullopt;
  }
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = ::read(fd, buf, sizeof buf);  // the socket's read timeout bounds this
    if (n <= 0) return std::nullopt;
    got.append(buf, n);
  }
  if (got.find(" 101 ") == std::string::npos) return std::nullopt;
  return got.substr(got.find("\r\n\r\n") + 4);
}

HttpReply http_get(std::uint16_t port, const std::string& target) {
  HttpReply reply;
  const int fd = connect_loopback(port, 10);
  if (fd < 0) return reply;
  const std::string req =
      "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  std::string got;
  if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);  // the read timeout bounds this
      if (n <= 0) break;
      got.append(buf, n);
    }
  }
  ::close(fd);
  const auto head_end = got.find("\r\n\r\n");
  if (head_end == std::string::npos || got.size() < 12) return reply;
  reply.status = std::atoi(got.substr(9, 3).c_str());
  reply.headers = got.substr(0, head_end);
  reply.body = got.substr(head_end + 4);
  return reply;
}

std::string run_on_pty(const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, std::string>>& env,
                       const std::vector<std::string>& input,
                       const std::vector<std::string>& wait_for,
                       std::chrono::milliseconds deadline) {
  int master = -1;
  winsize ws{};
  ws.ws_row = 40;
  ws.ws_col = 160;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &ws);
  if (pid < 0) throw std::runtime_error("forkpty failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  std::string out;
  std::size_t next = 0;
  std::size_t mark = 0;  // output before this was printed before the last input was typed
  const auto end = std::chrono::steady_clock::now() + deadline;
  bool done = false;
  while (!done && std::chrono::steady_clock::now() < end) {
    if (next < input.size() && (next >= wait_for.size() || wait_for[next].empty() ||
                                out.find(wait_for[next], mark) != std::string::npos)) {
      mark = out.size();
      const auto& keys = input[next++];
      if (::write(master, keys.data(), keys.size()) < 0) break;
      continue;
    }
    pollfd p{master, POLLIN, 0};
    const int r = ::poll(&p, 1, 50);
    if (r > 0) {
      char buf[4096];
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0)
        done = true;  // EIO once the child has exited and closed the terminal
      else
        out.append(buf, n);
    }
  }
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(master);
    throw std::runtime_error("the program on the pty did not finish; it printed:\n" + out);
  }
  ::waitpid(pid, nullptr, 0);
  ::close(master);
  return out;
}

std::string file_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string script(const std::string& cmd, int n, const std::string& prefix) {
  std::string s;
  for (int i = 0; i < n; ++i) s += cmd + " " + prefix + std::to_string(i) + "\n";
  return s;
}

std::string binary_address(const std::string& ready_line) {
  const auto b = ready_line.find("binary=") + 7;
  return ready_line.substr(b, ready_line.find(' ', b) - b);
}

bool poke_until_seen(Process& watcher, const std::string& text, const std::function<void()>& poke) {
  return wait_until([&] {
    poke();
    try {
      watcher.wait_for_line(text, 200ms);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  });
}

Cluster::Cluster(std::size_t nodes, bool with_syncer, std::vector<std::string> extra_node_args)
    : Cluster(nodes, ClusterArgs{std::move(extra_node_args), {}, {}}, with_syncer) {}

Cluster::Cluster(std::size_t nodes, ClusterArgs args, bool with_syncer)
    : extra_node_args_(std::move(args.node)),
      extra_syncer_args_(std::move(args.syncer)),
      extra_cli_args_(std::move(args.cli)),
      syncer_expected_(with_syncer) {
  // kvcli keeps its history and round-robin position under $HOME: give each cluster its own.
  setenv("HOME", dir().c_str(), 1);
  for (std::size_t i = 0; i < nodes; ++i) {
    NodeInfo n;
    n.name = std::string(1, static_cast<char>('a' + i));
    nodes_.push_back(std::move(n));
    start_node(i);
  }
  if (with_syncer) start_syncer();
}

Cluster::~Cluster() = default;

void Cluster::start_node(std::size_t i) {
  auto& n = nodes_[i];
  std::vector<std::string> argv{(bin_dir() / "kvnode").string(),
                                "--name",
                                n.name,
                                "--data",
                                (dir() / n.name).string(),
                                "--port",
                                std::to_string(n.binary_port),
                                "--http-port",
                                std::to_string(n.http_port),
                                "--log-level",
                                "debug"};
  argv.insert(argv.end(), extra_node_args_.begin(), extra_node_args_.end());
  if (!syncer_expected_) argv.push_back("--standalone");
  n.proc = std::make_unique<Process>(argv, dir() / (n.name + ".log"));
  const std::string line = n.proc->wait_for_line("kvnode " + n.name + " ready");
  n.binary = binary_address(line);
  n.binary_port = static_cast<std::uint16_t>(std::stoi(n.binary.substr(n.binary.rfind(':') + 1)));
  n.http_port = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
}

void Cluster::stop_node(std::size_t i, bool kill9) {
  auto& p = *nodes_[i].proc;
  p.signal(kill9 ? SIGKILL : SIGTERM);
  p.wait();
}

void Cluster::start_syncer(const std::vector<std::size_t>& only,
                           const std::vector<std::string>& extra, bool wait_ready) {
  std::vector<std::string> argv{(bin_dir() / "kvsync").string(),
                                "--nodes",
                                nodes_arg(only),
                                "--data",
                                (dir() / "sync").string(),
                                "--http-port",
                                std::to_string(syncer_http_port_),
                                "--log-level",
                                "debug"};
  argv.insert(argv.end(), extra_syncer_args_.begin(), extra_syncer_args_.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  syncer_ = std::make_unique<Process>(argv, dir() / "sync.log");
  const std::string line = syncer_->wait_for_line(wait_ready ? "kvsync ready" : "kvsync serving");
  const auto colon = line.rfind(':');
  syncer_http_port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
}

void Cluster::stop_syncer(bool kill9) {
  syncer_->signal(kill9 ? SIGKILL : SIGTERM);
  syncer_->wait();
}

std::string Cluster::nodes_arg(const std::vector<std::size_t>& only) const {
  std::string s;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!only.empty() && std::find(only.begin(), only.end(), i) == only.end()) continue;
    s += (s.empty() ? "" : ",") + nodes_[i].binary;
  }
  return s;
}

CliResult Cluster::cli(std::vector<std::string> args, const std::string& stdin_text) {
  args.insert(args.begin(), extra_cli_args_.begin(), extra_cli_args_.end());
  args.insert(args.begin(), {"--nodes", nodes_arg()});
  return run_cli(args, stdin_text);
}

std::vector<std::string> Cluster::items_on(std::size_t i) {
  // What the node holds now: no read-your-writes wait.
  auto r = cli({"--json", "--no-session", "--route", std::to_string(i), "list"});
  if (r.code != 0) return {"<node " + std::to_string(i) + " failed: " + r.out + ">"};
  auto v = boost::json::parse(r.out);
  std::vector<std::string> out;
  for (const auto& it : v.at("items").as_array()) {
    const auto& o = it.as_object();
    out.push_back(std::string(o.at("id").as_string()) + " v" +
                  std::to_string(o.at("version").to_number<std::uint64_t>()) + " " +
                  std::string(o.at("title").as_string()) +
                  (o.at("completed").as_bool() ? " done" : ""));
  }
  return out;
}

std::vector<std::string> Cluster::wait_converged(std::chrono::milliseconds deadline) {
  std::vector<std::string> first;
  const bool ok = wait_until(
      [&] {
        first = items_on(1);
        for (std::size_t i = 2; i <= nodes_.size(); ++i) {
          if (items_on(i) != first) return false;
        }
        return true;
      },
      deadline);
  if (!ok) {
    std::string diag;
    for (std::size_t i = 1; i <= nodes_.size(); ++i) {
      diag += "node " + std::to_string(i) + ":";
      for (const auto& s : items_on(i)) diag += " [" + s + "]";
      diag += "\n";
    }
    throw std::runtime_error("nodes did not converge:\n" + diag +
                             (syncer_ ? syncer_->log_tail() : ""));
  }
  return first;
}

}  // namespace kv::test

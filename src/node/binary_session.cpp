#include "node/binary_session.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/secret.hpp"

namespace kv::node {

using proto::msg::Error;

namespace {

constexpr std::size_t kInitialBuffer = 64 * 1024;

// Who may do what (docs/security.md): the sync operations need the cluster secret, and with
// --client-auth everything but PING and AUTH does.
std::optional<Error> refusal(const SessionRules& rules, bool authed, const proto::Request& req) {
  if (rules.secret.empty() || authed) return std::nullopt;
  // A STATUS that names a syncer life claims the node for that syncer.
  const auto* status = std::get_if<proto::msg::Status>(&req);
  const bool sync_op = std::holds_alternative<proto::msg::Fetch>(req) ||
                       std::holds_alternative<proto::msg::Apply>(req) ||
                       std::holds_alternative<proto::msg::Dump>(req) ||
                       (status && status->syncer_life != 0);
  if (sync_op) {
    return Error{proto::ErrorCode::kUnauthenticated,
                 "FETCH, APPLY, DUMP and a syncer's STATUS need the cluster secret: send AUTH "
                 "first (kvsync --secret-file FILE)"};
  }
  if (rules.client_auth && !std::holds_alternative<proto::msg::Ping>(req)) {
    return Error{proto::ErrorCode::kUnauthenticated,
                 "this node serves only clients that know the cluster secret: pass "
                 "--secret-file FILE (scripts/cluster.sh writes it to DATA/secret) or set "
                 "KV_SECRET"};
  }
  return std::nullopt;
}

}  // namespace

BinarySession::BinarySession(SessionRules rules, Clock::time_point now)
    : rules_(std::move(rules)), last_activity_(now) {
  if (rules_.max_pipeline == 0) rules_.max_pipeline = 1;
}

bool BinarySession::answer_here(std::variant<proto::Request, Error>& parsed, Pending& p) {
  if (auto* e = std::get_if<Error>(&parsed)) {
    p.response = std::move(*e);
    return true;
  }
  auto& req = std::get<proto::Request>(parsed);
  if (auto* auth = std::get_if<proto::msg::Auth>(&req)) {
    if (rules_.secret.empty() || secret::equal(auth->secret, rules_.secret)) {
      authed_ = true;
      p.response = proto::msg::Pong{};
    } else {
      wrong_secret_ = true;
      p.response = Error{proto::ErrorCode::kUnauthenticated,
                         "wrong cluster secret; check --secret-file (or KV_SECRET)"};
    }
    return true;
  }
  if (auto e = refusal(rules_, authed_, req)) {
    p.response = std::move(*e);
    return true;
  }
  return false;
}

BinarySession::Action BinarySession::next(Clock::time_point now,
                                          const std::function<bool(Commit)>& completed) {
  if (executing_ || writing_) {
    throw std::logic_error("BinarySession::next() before the last action was completed");
  }
  if (wrong_secret_) {
    wrong_secret_ = false;
    return Notice{Notice::Kind::kWrongSecret};
  }
  // Answer the complete frames already buffered, in order, up to max_pipeline per write.
  while (!fatal_ && answers_.size() < rules_.max_pipeline) {
    const auto d = proto::decode_frame({in_.data() + pos_, have_ - pos_});
    if (d.status == proto::DecodeStatus::kNeedMore) break;
    if (d.status == proto::DecodeStatus::kError) {
      // The stream cannot be resynchronised: answer once (request id 0) and close.
      const char* what = d.error == proto::ErrorCode::kFrameTooLarge
                             ? "frame length exceeds the 4 MiB limit"
                             : "frame length is shorter than a frame header";
      answers_.push_back(Pending{0, proto::MsgType::kPing, Error{d.error, what}, {}, now});
      fatal_ = true;
      break;
    }
    pos_ += d.frame.size;
    Pending p{
        d.frame.request_id, static_cast<proto::MsgType>(d.frame.type), proto::msg::Pong{}, {}, now};
    auto parsed = proto::parse_request(d.frame);
    const bool here = answer_here(parsed, p);
    answers_.push_back(std::move(p));
    if (!here) {
      // Requests after it wait for its answer: a read pipelined behind a WAIT sees what the
      // WAIT waited for.
      executing_ = true;
      return Execute{std::move(std::get<proto::Request>(parsed))};
    }
    if (wrong_secret_) {
      wrong_secret_ = false;
      return Notice{Notice::Kind::kWrongSecret};
    }
  }
  if (pos_ > 0) {
    std::copy(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
              in_.begin() + static_cast<std::ptrdiff_t>(have_), in_.begin());
    have_ -= pos_;
    pos_ = 0;
    partial_since_.reset();
  }
  Commit waiting;
  if (!answers_.empty()) {
    // Answers leave in order, each once every change made here up to it is durable (commits
    // complete in order): a read behind a write sees it.
    Commit last;
    std::size_t ready = 0;
    for (const auto& a : answers_) {
      const Commit upto = std::max(last, a.commit);
      if (completed && !upto.empty() && !completed(upto)) {
        waiting = upto;
        break;
      }
      last = upto;
      ++ready;
    }
    if (ready > 0) {
      ready_ = ready;
      waiting = {};
      writing_ = true;
      return Write{last, now + rules_.idle_timeout};
    }
  }
  if (fatal_ && waiting.empty()) return Close{CloseReason::kMalformed};
  if (have_ > 0 && !partial_since_) partial_since_ = now;
  auto deadline = last_activity_ + rules_.idle_timeout;
  if (partial_since_) deadline = std::min(deadline, *partial_since_ + rules_.frame_timeout);
  if (now >= deadline) {
    const bool slow = partial_since_ && now >= *partial_since_ + rules_.frame_timeout;
    if (!waiting.empty()) return Read{now + rules_.idle_timeout, waiting};  // a slow fsync
    return Close{slow ? CloseReason::kSlowFrame : CloseReason::kIdle};
  }
  if (have_ == in_.size()) {
    // Only a legal frame larger than the buffer gets here: grow towards its size.
    in_.resize(std::min(in_.size() * 2, proto::kMaxFrameLength + proto::kLengthSize));
  } else if (have_ == 0 && in_.size() > kInitialBuffer) {
    in_.resize(kInitialBuffer);
    in_.shrink_to_fit();
  }
  return Read{deadline, waiting};
}

std::span<std::uint8_t> BinarySession::buffer() {
  return {in_.data() + have_, in_.size() - have_};
}

void BinarySession::received(std::size_t n, Clock::time_point now) {
  have_ += std::min(n, in_.size() - have_);
  last_activity_ = now;
}

void BinarySession::executed(proto::Response response, Commit commit) {
  if (!executing_) throw std::logic_error("BinarySession::executed() without an Execute");
  executing_ = false;
  answers_.back().response = std::move(response);
  answers_.back().commit = commit;
}

const std::string& BinarySession::encode_answers(std::vector<Answered>& answered) {
  for (std::size_t i = 0; i < ready_; ++i) {
    const auto& a = answers_[i];
    proto::encode_response(out_, a.request_id, a.type, a.response);
    answered.push_back(Answered{a.type, !std::holds_alternative<Error>(a.response), a.arrived});
  }
  answers_.erase(answers_.begin(), answers_.begin() + static_cast<std::ptrdiff_t>(ready_));
  ready_ = 0;
  return out_;
}

void BinarySession::written(Clock::time_point now) {
  writing_ = false;
  out_.clear();
  last_activity_ = now;
}

}  // namespace kv::node

#include "core/client_pipeline.hpp"

#include <algorithm>

namespace kv {

std::uint32_t ClientPipeline::send(std::string& out, const proto::Request& req) {
  const std::uint32_t id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;  // 0 is a frame-level error's
  proto::encode_request(out, id, req);
  inflight_.push_back(Sent{id, proto::type_of(req)});
  return id;
}

std::span<std::uint8_t> ClientPipeline::buffer() {
  if (have_ == in_.size()) {
    in_.resize(std::min(in_.size() * 2, proto::kMaxFrameLength + proto::kLengthSize));
  }
  return {in_.data() + have_, in_.size() - have_};
}

ClientPipeline::Failure ClientPipeline::received(std::size_t n, std::vector<Answer>& answers) {
  have_ += std::min(n, in_.size() - have_);
  std::size_t pos = 0;
  Failure failure = Failure::kNone;
  for (;;) {
    const auto d = proto::decode_frame({in_.data() + pos, have_ - pos});
    if (d.status == proto::DecodeStatus::kNeedMore) break;
    if (d.status == proto::DecodeStatus::kError) {
      failure = Failure::kNotAFrame;
      break;
    }
    if (inflight_.empty()) {
      failure = Failure::kUnsolicited;
      break;
    }
    const Sent sent = inflight_.front();
    // A frame-level error from the node carries request id 0; otherwise ids must match.
    if (d.frame.request_id != sent.id && d.frame.request_id != 0) {
      failure = Failure::kOutOfOrder;
      break;
    }
    inflight_.pop_front();
    answered_ = true;
    auto parsed = proto::parse_response(d.frame, sent.type);
    if (auto* e = std::get_if<proto::msg::Error>(&parsed)) {
      answers.push_back(Answer{sent.id, proto::Response{std::move(*e)}});
    } else {
      answers.push_back(Answer{sent.id, std::move(std::get<proto::Response>(parsed))});
    }
    pos += d.frame.size;
  }
  if (pos > 0) {
    std::copy(in_.begin() + static_cast<std::ptrdiff_t>(pos),
              in_.begin() + static_cast<std::ptrdiff_t>(have_), in_.begin());
    have_ -= pos;
  }
  return failure;
}

}  // namespace kv

#include "node/requests.hpp"

#include "node/store.hpp"

namespace kv::node {

namespace {
using proto::msg::Error;

template <class T>
proto::Response to_response(Result<T>&& r) {
  if (auto* e = std::get_if<Refusal>(&r)) return to_wire(std::move(*e));
  if constexpr (std::is_same_v<T, Item>) {
    return proto::msg::ItemReply{std::move(std::get<Item>(r))};
  } else {
    return std::move(std::get<T>(r));
  }
}

// A write's answer names its change, for the client's session token.
proto::Response write_response(const Store& store, Result<Item>&& r) {
  auto resp = to_response(std::move(r));
  if (auto* item = std::get_if<proto::msg::ItemReply>(&resp)) {
    item->seq = store.seq();
    item->incarnation = store.incarnation();
  }
  return resp;
}
}  // namespace

Answer answer(Store& store, proto::Request& req, const ServerFacts& facts) {
  const Commit before = store.last_commit();
  Answer a;
  a.response = std::visit(
      [&](auto& m) -> proto::Response {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, proto::msg::Ping>) {
          return proto::msg::Pong{};
        } else if constexpr (std::is_same_v<T, proto::msg::Status>) {
          if (m.syncer_life != 0) store.claim(m.syncer_life);
          NodeStatus status = store.status();
          status.http_port = facts.http_port;
          status.subscribers = facts.subscribers;
          return proto::msg::StatusReply{std::move(status)};
        } else if constexpr (std::is_same_v<T, proto::msg::Create>) {
          return write_response(store, store.create(m.title));
        } else if constexpr (std::is_same_v<T, proto::msg::Get>) {
          return to_response(store.get(m.id));
        } else if constexpr (std::is_same_v<T, proto::msg::List>) {
          return store.list_page(m.after, m.limit);
        } else if constexpr (std::is_same_v<T, proto::msg::Update>) {
          return write_response(store, store.update(m));
        } else if constexpr (std::is_same_v<T, proto::msg::Delete>) {
          return write_response(store, store.remove(m.id));
        } else if constexpr (std::is_same_v<T, proto::msg::Wait> ||
                             std::is_same_v<T, proto::msg::Auth>) {
          return Error{proto::ErrorCode::kUnknownType, "answered by the session"};
        } else if constexpr (std::is_same_v<T, proto::msg::Fetch>) {
          return store.fetch(m.after_seq, m.limit);
        } else if constexpr (std::is_same_v<T, proto::msg::Dump>) {
          return store.dump_stamped(m.after, m.limit);
        } else {
          static_assert(std::is_same_v<T, proto::msg::Apply>);
          return to_response(store.apply(m));
        }
      },
      req);
  if (store.last_commit() != before) a.commit = store.last_commit();
  // A DUMP reads memory, which holds changes not yet durable: it is answered once they are, and
  // if one fails (memory goes back to the disk) it is answered with that error instead. A page
  // that left out an item for a pending change that then failed would leave the item's stamped
  // value out of a rebuilt log for good (kvsim seed 822509).
  if (std::holds_alternative<proto::msg::Dump>(req) && !store.completed(store.last_commit())) {
    a.commit = store.last_commit();
  }
  return a;
}

}  // namespace kv::node

// Writes the fuzzers' seed corpora with the real encoders: gen_corpus DIR writes DIR/<target>/*.
// Seeds are small valid inputs; libFuzzer mutates them into the invalid ones.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/item.hpp"
#include "core/notification.hpp"
#include "core/protocol.hpp"
#include "node/store_format.hpp"
#include "sync/sync_log_format.hpp"

namespace fs = std::filesystem;
namespace proto = kv::proto;
namespace msg = kv::proto::msg;

namespace {

fs::path g_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

kv::Item item(std::string id, std::string title, bool completed, bool deleted, std::uint64_t v) {
  return kv::Item{std::move(id), std::move(title), completed, deleted, v};
}

std::vector<kv::SessionMark> marks() {
  return {{"a", 0x1234567890ull, 7}, {"b", 42, 300}};
}

// A sample of every message; messages this file does not know keep their defaults, or get a short
// string in a field named like the AUTH secret.
template <class T>
void sample(T& m) {
  if constexpr (requires { m.secret = std::string(); }) m.secret = "s3cret";
}
void sample(msg::Create& m) {
  m.title = "Buy milk";
}
void sample(msg::Get& m) {
  m.id = "12b";
}
void sample(msg::Delete& m) {
  m.id = "3a";
}
void sample(msg::List& m) {
  m.after = "7a";
  m.limit = 100;
}
void sample(msg::Update& m) {
  m.id = "4a";
  m.completed = true;
  m.title = "Buy oat milk";
}
void sample(msg::Wait& m) {
  m.timeout_ms = 2000;
  m.want = marks();
}
void sample(msg::Fetch& m) {
  m.after_seq = 128;
  m.limit = 10000;
}
void sample(msg::Apply& m) {
  m.upto_stamp = 14;
  m.synced_upto = 9;
  m.id_floor = 20;
  m.purge_upto = 3;
  m.reset = true;
  m.changes = {{13, "a", 4, item("4a", "T", false, false, 13)},
               {14, "b", 1, item("5b", "", false, true, 14)}};
  m.stamp_high = 15;
  m.marks = marks();
}
void sample(msg::StatusReply& m) {
  m.status = kv::NodeStatus{"a", 0xfeedfacecafebeefull, 40, 12, 38, 11, 5, 2, 1, 7101, 39, 3};
}
void sample(msg::ItemReply& m) {
  m.item = item("4a", "Buy milk", true, false, 200);
  m.seq = 5;
  m.incarnation = 99;
}
void sample(msg::ItemsReply& m) {
  m.items = {item("1a", "TaskA", false, false, 1), item("2b", "TaskB", true, false, 130)};
  m.next = "2b";
}
void sample(msg::Changes& m) {
  m.seq_high = 9;
  m.changes = {{8, item("3a", "x", false, false, 8)}, {9, item("3a", "", false, true, 9)}};
}
void sample(msg::Applied& m) {
  m.applied_stamp = 14;
  m.synced_upto = 9;
  m.changed = 2;
}
void sample(msg::Waited& m) {
  m.caught_up = true;
  m.have = marks();
}
void sample(msg::Error& m) {
  m.code = proto::ErrorCode::kNotFound;
  m.message = "no item 9z";
}

std::string hex(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02x", v);
  return buf;
}

template <class Variant, std::size_t... I>
std::vector<Variant> samples(std::index_sequence<I...>) {
  std::vector<Variant> out;
  (
      [&] {
        std::variant_alternative_t<I, Variant> m;
        sample(m);
        out.emplace_back(std::move(m));
      }(),
      ...);
  return out;
}
template <class Variant>
std::vector<Variant> samples() {
  return samples<Variant>(std::make_index_sequence<std::variant_size_v<Variant>>{});
}

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void frames() {
  std::string stream;
  std::uint32_t id = 1;
  for (const auto& req : samples<proto::Request>()) {
    const auto t = static_cast<unsigned>(proto::type_of(req));
    std::string f;
    proto::encode_request(f, id++, req);
    put("fuzz_frame", "req_" + hex(t), f);
    stream += f;
    // Every response that parses as the answer to this request type.
    int n = 0;
    for (const auto& resp : samples<proto::Response>()) {
      if (std::holds_alternative<msg::Error>(resp)) continue;
      std::string r;
      proto::encode_response(r, id, static_cast<proto::MsgType>(t), resp);
      const auto d = proto::decode_frame(bytes_of(r));
      if (!std::holds_alternative<proto::Response>(
              proto::parse_response(d.frame, static_cast<proto::MsgType>(t)))) {
        continue;
      }
      put("fuzz_frame", "resp_" + hex(t) + (n++ ? "_" + std::to_string(n) : ""), r);
    }
  }
  std::string err;
  msg::Error e;
  sample(e);
  proto::encode_response(err, 7, proto::MsgType::kGet, e);
  put("fuzz_frame", "resp_ff", err);
  put("fuzz_frame", "stream", stream + err);
}

void notifications() {
  // The examples of docs/protocol.md, "WebSocket notifications".
  put("fuzz_notification", "doc_hello", R"({"type":"hello","node":"a","seq":3,"applied_stamp":2})");
  put("fuzz_notification", "doc_local",
      R"({"type":"local","node":"a","seq":4,"op":"create","stamp":0,"origin":"a",)"
      R"( "item":{"id":"4a","title":"Buy milk","completed":false,"deleted":false,"version":4}})");
  put("fuzz_notification", "doc_synced",
      R"({"type":"synced","node":"b","seq":0,"op":"create","stamp":3,"origin":"a",)"
      R"( "item":{"id":"4a","title":"Buy milk","completed":false,"deleted":false,"version":3}})");
  kv::Notification n;
  n.kind = kv::Notification::Kind::kSynced;
  n.node = "b";
  n.op = "delete";
  n.item = item("18446744073709551615z", "caf\xc3\xa9 \"q\"\\\n", true, true, UINT64_MAX);
  n.seq = 12;
  n.stamp = 9;
  n.origin = "z";
  put("fuzz_notification", "to_json_synced", kv::to_json(n));
  n.kind = kv::Notification::Kind::kLocal;
  n.op = "update";
  n.item.deleted = false;
  put("fuzz_notification", "to_json_local", kv::to_json(n));
}

void records() {
  namespace node = kv::node;
  put("fuzz_records", "meta",
      node::encode_meta({"a", 0x1234567890abcdefull, 40, 12, 38, 11, 20, 0xfedcba98ull, 30, 45}));
  put("fuzz_records", "meta_zero", node::encode_meta({}));
  put("fuzz_records", "record",
      node::encode_record({"Buy milk", true, false, 200, 13, 12, "b", 4}));
  put("fuzz_records", "record_tombstone",
      node::encode_record({"", false, true, UINT64_MAX, UINT64_MAX, 0, "abcdefgh", 1}));
  put("fuzz_records", "key_12b", node::item_key("12b"));
  put("fuzz_records", "key_max", node::item_key("18446744073709551615abcdefgh"));
  put("fuzz_records", "change_key", node::change_key(77));
  put("fuzz_records", "change",
      node::encode_change({kv::Item{"12b", "Walk", true, false, 0}, 9, 3}));
  put("fuzz_records", "change_v1", "12b");
  // Format 1, which the decoders still read (docs/storage.md): the same Meta and Record as an
  // older node wrote them.
  put("fuzz_records", "meta_v1",
      std::string("\x01\x01"
                  "a\xef\x9b\xaf\x85\x89\xcf\x95\x9a\x12(\x0c&\x0b\x14",
                  17));
  put("fuzz_records", "record_v1",
      std::string("\x01\x01\xc8\x01\x0d\x0c\x01"
                  "b\x04\x08"
                  "Buy milk",
                  18));
  put("fuzz_records", "log_entry",
      kv::sync::encode_entry(kv::StampedChange{7, "a", 3, kv::Item{"5a", "T", false, false, 7}}));
}

void commands() {
  const char* lines[] = {
      "create TaskA",
      "create \"two  spaces\" and more",
      "list",
      "get 1a",
      "update 1a complete",
      "update 1a incomplete",
      "update 1a title New title",
      "delete 3b",
      "watch",
      "watch 2 3a",
      "nodes",
      "route random",
      "session off",
      "help update",
      "quit",
      "# a comment",
      "\tget\t\"12b\"",
  };
  int i = 0;
  for (const char* l : lines) put("fuzz_commands", "line_" + std::to_string(i++), l);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: gen_corpus DIR  (writes DIR/<target>/<seed>)\n";
    return 2;
  }
  g_root = argv[1];
  frames();
  notifications();
  records();
  commands();
  return 0;
}

// Test tool: plants a divergence. Rewrites one item's title in a stopped node's data directory,
// keeping its stamp and version, so that the node holds another value than the syncer's log
// under the same stamp, which no sync rule can see and the digests must catch (docs/sync.md,
// "Digests"). Used by the viewer's browser test.
//
//   kvplant DATA_DIR ID TITLE      exit 0 once written; 1 with a sentence on stderr otherwise
#include <rocksdb/db.h>

#include <iostream>
#include <memory>
#include <string>

#include "node/store_format.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: kvplant DATA_DIR ID TITLE\n";
    return 2;
  }
  const std::string dir = argv[1], id = argv[2], title = argv[3];
  rocksdb::DB* raw = nullptr;
  const auto open = rocksdb::DB::Open(rocksdb::Options(), dir, &raw);
  if (!open.ok()) {
    std::cerr << "kvplant: cannot open " << dir << ": " << open.ToString() << "\n";
    return 1;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string bytes;
  const auto key = kv::node::item_key(id);
  if (!db->Get(rocksdb::ReadOptions(), key, &bytes).ok()) {
    std::cerr << "kvplant: no item " << id << " in " << dir << "\n";
    return 1;
  }
  auto rec = kv::node::decode_record(bytes);
  if (!rec) {
    std::cerr << "kvplant: the record of " << id << " does not decode\n";
    return 1;
  }
  rec->title = title;
  rocksdb::WriteOptions sync;
  sync.sync = true;
  if (!db->Put(sync, key, kv::node::encode_record(*rec)).ok()) {
    std::cerr << "kvplant: cannot write " << id << "\n";
    return 1;
  }
  return 0;
}

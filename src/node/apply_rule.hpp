// Rule R on a node (docs/sync.md, "Applying a stamped change"): whether a stamped change from the
// syncer replaces what the node holds of its item. Pure, so that test_store checks it case by
// case; Store::apply decides every change of a batch with it.
#pragma once

#include <cstdint>

#include "core/item.hpp"
#include "node/store_format.hpp"

namespace kv::node {

// `held`: the node's record of the item (nullptr: none). `synced_upto`: the node's local
// changes up to here are in the syncer's log (as of this batch).
inline bool stamped_change_applies(const Record* held, bool deleted, std::uint64_t stamp,
                                   std::uint64_t synced_upto) {
  if (!held) return true;  // new to this node
  if (held->local_seq > synced_upto) {
    // The node's own changes are not yet in the syncer's log: they will be stamped later and
    // win, unless this is a delete, which beats any update. A stamped delete settles them all,
    // a local delete among them too: an update the node made before its own delete, fetched
    // after this delete's tombstone was compacted, would otherwise bring the item back (found
    // by kvsim, seed 530).
    return deleted;
  }
  if (held->local_seq == 0) {
    // A stamped value: an older or equal one changes nothing.
    return stamped_beats(deleted, stamp, held->deleted, held->stamp);
  }
  // A value of the node's own that the log holds (not pending, not yet come back stamped) gives
  // way to the log's latest value of the item, which is at least as late: this very change, or
  // what beat it. (Its record's stamp is the one it was made on, which rule R cannot compare:
  // found by kvsim, seed 41, where a local delete so kept its place and never became the
  // stamped tombstone a rebuilt log needed.)
  return true;
}

}  // namespace kv::node

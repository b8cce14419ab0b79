// Memory for the store's in-memory index: one node per item, all of one size, carved from large
// chunks that ask the kernel for transparent huge pages.
//
// Why: a restart rebuilds the index of every item (Store::Impl::load). With a million items,
// half of that time went to malloc and to page faults on the 4 KiB pages it touched for the
// first time (bench/PROFILE.md, 2026-12-03). Here a node costs a pointer bump or a pop from a
// free list, and a chunk faults in 2 MiB at a time where the kernel allows it (madvise; without
// huge pages it still works, with ordinary pages).
//
// A freed node goes to the free list and is reused; chunks go back to the system only when the
// pool is destroyed, so the pool must outlive every container that uses it. Not thread-safe: the
// store's thread only, like the store.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <new>
#include <vector>

// Under AddressSanitizer every node comes from operator new, so that ASan still sees each
// node's lifetime (a pool's reuse would hide a use after free).
#if defined(__SANITIZE_ADDRESS__) && !defined(KV_NODE_POOL_OFF)
#define KV_NODE_POOL_OFF
#endif

namespace kv::node {

class NodePool {
 public:
  NodePool() = default;
  ~NodePool() {
    for (const Chunk& c : chunks_) {
      if (c.bytes < kHugePage) {
        ::operator delete(c.at);
      } else {
        ::munmap(c.at, c.bytes);
      }
    }
  }
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  // The first size asked for is the pooled one (a container allocates nodes of one size); any
  // other size goes to operator new.
  void* allocate(std::size_t bytes) {
#ifdef KV_NODE_POOL_OFF
    return ::operator new(bytes);
#else
    if (size_ == 0) size_ = round_up(bytes);
    if (round_up(bytes) != size_) return ::operator new(bytes);
    if (free_ != nullptr) {
      FreeNode* n = free_;
      free_ = n->next;
      return n;
    }
    if (static_cast<std::size_t>(end_ - next_) < size_) grow();
    void* p = next_;
    next_ += size_;
    return p;
#endif
  }

  void deallocate(void* p, std::size_t bytes) {
#ifdef KV_NODE_POOL_OFF
    ::operator delete(p);
#else
    if (round_up(bytes) != size_) {
      ::operator delete(p);
      return;
    }
    free_ = new (p) FreeNode{free_};
#endif
  }

 private:
  // Chunks grow from 64 KiB (a small store, and the simulator's thousands of them, stay small)
  // by doubling up to 8 MiB (four huge pages). Below 2 MiB they come from malloc, which keeps
  // them for the next store (an mmap per store made the simulator 40% slower); from 2 MiB on
  // from mmap, asking for huge pages.
  static constexpr std::size_t kFirstChunk = std::size_t{64} << 10;
  static constexpr std::size_t kLargestChunk = std::size_t{8} << 20;
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  static constexpr std::size_t kAlign = alignof(std::max_align_t);
  struct FreeNode {
    FreeNode* next;
  };
  static std::size_t round_up(std::size_t n) {
    n = n < sizeof(FreeNode) ? sizeof(FreeNode) : n;
    return (n + kAlign - 1) / kAlign * kAlign;
  }
  void grow() {
    const std::size_t bytes =
        chunks_.empty() ? kFirstChunk : std::min(chunks_.back().bytes * 2, kLargestChunk);
    void* c = nullptr;
    if (bytes < kHugePage) {
      c = ::operator new(bytes);  // malloc keeps small chunks at hand for the next store
    } else {
      c = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (c == MAP_FAILED) throw std::bad_alloc();
      ::madvise(c, bytes, MADV_HUGEPAGE);  // a hint: without THP, ordinary pages
    }
    chunks_.push_back(Chunk{c, bytes});
    next_ = static_cast<char*>(c);
    end_ = next_ + bytes;
  }

  std::size_t size_ = 0;
  FreeNode* free_ = nullptr;
  char* next_ = nullptr;
  char* end_ = nullptr;
  struct Chunk {
    void* at;
    std::size_t bytes;
  };
  std::vector<Chunk> chunks_;
};

// A std::allocator stand-in that takes its memory from a NodePool.
template <class T>
class PoolAllocator {
 public:
  using value_type = T;
  explicit PoolAllocator(NodePool& pool) : pool_(&pool) {}
  template <class U>
  PoolAllocator(const PoolAllocator<U>& other) : pool_(other.pool_) {}

  T* allocate(std::size_t n) { return static_cast<T*>(pool_->allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) { pool_->deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>& other) const {
    return pool_ == other.pool_;
  }

 private:
  template <class U>
  friend class PoolAllocator;
  NodePool* pool_;
};

}  // namespace kv::node

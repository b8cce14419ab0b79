// The simulator's disk (storage::Disk): every data directory is a volume in memory that keeps
// what the OS was given (`written`: survives a crash of the process) apart from what was synced
// (`durable`: survives a power loss), so that a simulated crash loses exactly what a real one
// would. Faults: a full disk (writes fail, and so does opening), a power loss, a wiped
// directory, and a directory put back from an older copy.
//
// Threading: none; the simulator is single-threaded (its stores commit by hand).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "storage/engine.hpp"

namespace kv::sim {

class MemDisk : public storage::Disk {
 public:
  using Contents = std::map<std::string, std::string, std::less<>>;
  struct Volume {
    Contents written;   // what a process that opens the directory now would read
    Contents durable;   // what is left after a power loss
    bool full = false;  // writes and opens fail while set
    std::uint64_t writes = 0;
    std::uint64_t syncs = 0;
  };

  storage::Opened open(const std::filesystem::path& dir, bool read_only = false) override;

  // The volume at `dir` (created empty when missing), or nullptr when there is none.
  Volume& volume(const std::filesystem::path& dir);
  Volume* find(const std::filesystem::path& dir);
  bool exists(const std::filesystem::path& dir) const { return volumes_.count(dir.string()) > 0; }
  // The directory is gone (rm -rf).
  void wipe(const std::filesystem::path& dir) { volumes_.erase(dir.string()); }
  // A power loss: what was written but not synced is gone.
  void power_loss(const std::filesystem::path& dir);
  // A copy of the directory as a stopped process left it, and putting one back.
  Contents copy(const std::filesystem::path& dir) { return volume(dir).written; }
  void restore(const std::filesystem::path& dir, const Contents& contents);

 private:
  std::map<std::string, std::shared_ptr<Volume>> volumes_;
};

}  // namespace kv::sim

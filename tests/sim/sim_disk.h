// SimDisk: a simulated member's durable state, in one of two models.
//
//   - Memory: a raft::MemoryStorage. Every write is durable the moment it
//     returns, and a crash loses nothing of it; what a crash loses is
//     decided by the simulator (which parts of a Ready it persisted).
//   - WAL: the real keel::wal::DiskStorage over a private FaultInjectionEnv,
//     opened without the background writer, so the IO happens on the
//     calling thread and the run stays single-threaded and deterministic.
//     A write is durable once WaitDurable() says so; a crash is a power cut
//     in the Env (unsynced bytes dropped, or a sector prefix of them kept: a
//     torn write), and what survives is whatever the WAL's recovery makes of
//     the files. An armed IO crash kills the "process" at the n-th mutating
//     file operation from now, inside a Save, a segment rollover, a snapshot
//     or a purge.
//
// The disk is always open for reading: after a power cut it is reopened at
// once, so the checks that look at down members see exactly what recovery
// found. Reopen() recovers once more when the member restarts.
//
// Thread safety: none; used by the simulation's one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "common/status.h"
#include "raft/storage.h"
#include "wal/disk_storage.h"
#include "wal/fault_injection_env.h"

namespace keel::sim {

struct SimDiskOptions {
  bool wal = false;
  uint64_t segment_size = 64 << 10;
};

class SimDisk {
 public:
  // A new, empty disk. In WAL mode a failure to create the log is fatal:
  // nothing has been injected yet.
  explicit SimDisk(const SimDiskOptions& options);
  ~SimDisk();
  SimDisk(const SimDisk&) = delete;
  SimDisk& operator=(const SimDisk&) = delete;

  bool wal() const { return options_.wal; }
  // What the RawNode reads and the checker inspects.
  raft::Storage* raft_storage() { return storage_; }
  const raft::Storage& storage() const { return *storage_; }

  raft::HardState GetHardState() const;
  raft::Index FirstIndex() const { return storage_->FirstIndex(); }
  raft::Index LastIndex() const { return storage_->LastIndex(); }

  // Entries (a conflicting suffix dropped first), then the hard state if
  // any: durable when this returns OK. On an error the process has died;
  // the entries may be visible until the next Crash().
  Status Save(const raft::HardState* hs, const std::vector<raft::Entry>& ents);
  // The same write, handed to the WAL but not waited for (the torn-write
  // crash: the next Crash() decides how much of it reaches the disk). In
  // memory mode, the entries only (a MemoryStorage cannot tear).
  void SaveUnsynced(const raft::HardState* hs,
                    const std::vector<raft::Entry>& ents);
  Status ApplySnapshot(raft::Snapshot snap);
  Result<raft::Snapshot> CreateSnapshot(raft::Index i,
                                        const raft::ConfState* cs,
                                        std::string data);
  Status Compact(raft::Index i);

  // WAL mode: the n-th mutating file operation from now kills the process.
  void ArmIoCrash(uint64_t n);
  // Undoes ArmIoCrash (the liveness phase has no faults).
  void DisarmIoCrash();
  // WAL mode: whether the process has died in an IO call (or the WAL has
  // failed for good): the member must crash.
  bool dead() const;

  // The process dies and the power goes: unsynced data is lost, a sector
  // prefix of it kept if tear_rng != nullptr; then recovery runs. Memory
  // mode: nothing to do. A recovery failure is returned (a finding).
  Status Crash(Rng* tear_rng);
  // A restart: close and recover again (WAL mode), as a new process does.
  Status Reopen();

  // "wal seg=3..5 lsn=17" or "memory", for failure reports.
  std::string Describe() const;

 private:
  Status OpenWal();
  void CloseWal();

  SimDiskOptions options_;
  std::unique_ptr<raft::MemoryStorage> mem_;
  std::unique_ptr<wal::FaultInjectionEnv> env_;
  std::unique_ptr<wal::DiskStorage> disk_;
  std::unique_ptr<raft::MemoryStorage> broken_;  // after a failed recovery
  raft::Storage* storage_ = nullptr;
};

}  // namespace keel::sim

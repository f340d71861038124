#include "sim/sim_disk.h"

#include <fmt/format.h>

#include "common/check.h"

namespace keel::sim {

namespace {
constexpr char kDir[] = "/member";
}  // namespace

SimDisk::SimDisk(const SimDiskOptions& options) : options_(options) {
  if (!options_.wal) {
    mem_ = std::make_unique<raft::MemoryStorage>();
    storage_ = mem_.get();
    return;
  }
  env_ = std::make_unique<wal::FaultInjectionEnv>();
  Status s = OpenWal();
  KEEL_CHECK(s.ok()) << "creating a simulated WAL: " << s.ToString();
}

SimDisk::~SimDisk() {
  // Drop the storage before the Env it writes to.
  disk_.reset();
}

Status SimDisk::OpenWal() {
  wal::DiskStorageOptions o;
  o.dir = kDir;
  o.segment_size = options_.segment_size;
  // With no writer thread, WaitDurable does the IO on the calling thread:
  // one thread, and the same seed gives the same IO.
  o.background_writer = false;
  // Small, so that old entries are read back from their segments too.
  o.cache_bytes = 4 << 10;
  o.snapshots_to_keep = 2;
  auto d = wal::DiskStorage::Open(env_.get(), o);
  if (!d.ok()) {
    // Recovery failed (reported by the caller, which fails the run): an
    // empty log keeps the failure report's readers safe.
    broken_ = std::make_unique<raft::MemoryStorage>();
    storage_ = broken_.get();
    return d.status();
  }
  disk_ = std::move(d).value();
  storage_ = disk_.get();
  return Status::OK();
}

void SimDisk::CloseWal() {
  storage_ = nullptr;
  disk_.reset();
}

raft::HardState SimDisk::GetHardState() const {
  if (disk_ != nullptr) return disk_->GetHardState();
  if (mem_ != nullptr) return mem_->GetHardState();
  return {};
}

Status SimDisk::Save(const raft::HardState* hs,
                     const std::vector<raft::Entry>& ents) {
  if (mem_ != nullptr) {
    if (!ents.empty()) KEEL_RETURN_IF_ERROR(mem_->Append(ents));
    if (hs != nullptr) mem_->SetHardState(*hs);
    return Status::OK();
  }
  auto lsn = disk_->Save(hs, ents);
  if (!lsn.ok()) return lsn.status();
  return disk_->WaitDurable(*lsn);
}

void SimDisk::SaveUnsynced(const raft::HardState* hs,
                           const std::vector<raft::Entry>& ents) {
  if (mem_ != nullptr) {
    if (!ents.empty()) KEEL_CHECK(mem_->Append(ents).ok()) << "";
    return;
  }
  (void)disk_->Save(hs, ents);  // an error here is a crash all the same
}

Status SimDisk::ApplySnapshot(raft::Snapshot snap) {
  if (mem_ != nullptr) return mem_->ApplySnapshot(std::move(snap));
  return disk_->ApplySnapshot(std::move(snap));
}

Result<raft::Snapshot> SimDisk::CreateSnapshot(raft::Index i,
                                               const raft::ConfState* cs,
                                               std::string data) {
  if (mem_ != nullptr) return mem_->CreateSnapshot(i, cs, std::move(data));
  return disk_->CreateSnapshot(i, cs, std::move(data));
}

Status SimDisk::Compact(raft::Index i) {
  if (mem_ != nullptr) return mem_->Compact(i);
  return disk_->Compact(i);
}

void SimDisk::ArmIoCrash(uint64_t n) {
  if (env_ != nullptr) env_->CrashAfterOps(n);
}

void SimDisk::DisarmIoCrash() {
  // The Env has no disarm; a trigger this far away never fires in a run.
  if (env_ != nullptr && !env_->crashed())
    env_->CrashAfterOps(uint64_t{1} << 62);
}

bool SimDisk::dead() const {
  if (env_ == nullptr) return false;
  return env_->crashed() || disk_ == nullptr || !disk_->wal()->health().ok();
}

Status SimDisk::Crash(Rng* tear_rng) {
  if (env_ == nullptr) return Status::OK();
  // The process is gone: nothing may reach the disk from here on except
  // what it had already handed to the kernel. Closing the storage flushes
  // what was submitted but not written; with the Env dead, that is at most
  // one write into the page cache, which the power cut below then keeps a
  // sector prefix of, or drops.
  if (!env_->crashed()) env_->CrashAfterOps(1);
  CloseWal();
  Status s = env_->SimulateCrash(tear_rng);
  KEEL_CHECK(s.ok()) << "simulated power cut: " << s.ToString();
  return OpenWal();
}

Status SimDisk::Reopen() {
  if (env_ == nullptr) return Status::OK();
  CloseWal();
  return OpenWal();
}

std::string SimDisk::Describe() const {
  if (env_ == nullptr) return "memory";
  if (disk_ == nullptr) return "wal (not open)";
  std::vector<std::string> segs = disk_->wal()->SegmentPaths();
  return fmt::format("wal {} segment(s), durable lsn {}", segs.size(),
                     disk_->wal()->durable_lsn());
}

}  // namespace keel::sim

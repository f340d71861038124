// keel-wal: inspect, verify and repair a member's write-ahead log.
//
//   keel-wal dump <dir>            every record, human-readable
//   keel-wal verify <dir>          exit 0 if intact; else names file+offset
//   keel-wal repair <dir> [--yes]  cut a damaged tail of the last segment
//
// <dir> is a data directory (holding wal/ and snap/) or a wal directory.
// Exit codes: 0 ok, 1 corruption, 2 torn tail (recovery would truncate
// it), 3 usage or I/O error, 4 repair needed but not confirmed.
// Flags in, objects wired, nothing else: the scanning is wal/record.h's.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "wal/env.h"
#include "wal/record.h"
#include "wal/snapshot_store.h"
#include "wal/wal.h"

namespace keel::wal {
namespace {

constexpr int kOk = 0, kCorrupt = 1, kTorn = 2, kError = 3, kUnconfirmed = 4;

struct Layout {
  std::string wal_dir;
  std::string snap_dir;               // empty if none
  std::vector<std::string> segments;  // paths, by sequence number
};

int Fail(const Status& s) {
  std::fprintf(stderr, "keel-wal: %s\n", s.ToString().c_str());
  return kError;
}

bool FindLayout(Env* env, const std::string& dir, Layout* out, int* rc) {
  std::string wal_dir = JoinPath(dir, "wal");
  if (env->FileExists(wal_dir)) {
    out->wal_dir = wal_dir;
    if (env->FileExists(JoinPath(dir, "snap"))) {
      out->snap_dir = JoinPath(dir, "snap");
    }
  } else {
    out->wal_dir = dir;
  }
  auto names = env->ListDir(out->wal_dir);
  if (!names.ok()) {
    *rc = Fail(names.status());
    return false;
  }
  uint64_t prev = 0;
  for (const std::string& name : *names) {
    uint64_t seq;
    raft::Index first;
    if (!ParseSegmentFileName(name, &seq, &first)) continue;
    if (!out->segments.empty() && seq != prev + 1) {
      std::printf("CORRUPT %s: segment(s) missing before it\n",
                  JoinPath(out->wal_dir, name).c_str());
      *rc = kCorrupt;
      return false;
    }
    prev = seq;
    out->segments.push_back(JoinPath(out->wal_dir, name));
  }
  return true;
}

struct Problem {
  std::string path;
  SegmentScan scan;
  bool last = false;
};

// Scans every segment; prints records if `print`. Returns the first problem.
int ScanAll(Env* env, const Layout& layout, bool print, Problem* problem) {
  for (size_t i = 0; i < layout.segments.size(); i++) {
    const std::string& path = layout.segments[i];
    const bool last = i + 1 == layout.segments.size();
    std::string data;
    Status s = env->ReadFile(path, &data);
    if (!s.ok()) return Fail(s);
    if (print) std::printf("== %s (%zu bytes)\n", path.c_str(), data.size());
    Status undecodable;
    uint64_t bad_offset = 0;
    auto visit = [&](RecordType type, std::string_view payload,
                     uint64_t off) -> Status {
      std::string text = DescribeRecord(type, payload);
      if (text.find("<undecodable>") != std::string::npos) {
        bad_offset = off;
        return Status::Corruption(
            "undecodable " + std::string(RecordTypeName(type)) + " record");
      }
      if (print)
        std::printf("%10llu  %s\n", static_cast<unsigned long long>(off),
                    text.c_str());
      return Status::OK();
    };
    SegmentScan scan = ScanSegment(data, last, visit, &undecodable);
    if (!undecodable.ok()) {
      scan.end = ScanEnd::kCorrupt;
      scan.problem = undecodable.message();
      scan.problem_offset = scan.valid_end = bad_offset;
    }
    if (print) {
      std::printf("   records: %llu, valid bytes: %llu\n",
                  static_cast<unsigned long long>(scan.records),
                  static_cast<unsigned long long>(scan.valid_end));
    }
    if (scan.end != ScanEnd::kClean) {
      *problem = {path, scan, last};
      std::printf("%s %s offset %llu: %s\n",
                  scan.end == ScanEnd::kTorn ? "TORN TAIL" : "CORRUPT",
                  path.c_str(),
                  static_cast<unsigned long long>(scan.problem_offset),
                  scan.problem.c_str());
      return scan.end == ScanEnd::kTorn ? kTorn : kCorrupt;
    }
  }
  return kOk;
}

int CheckSnapshots(Env* env, const Layout& layout, bool print) {
  if (layout.snap_dir.empty()) return kOk;
  SnapshotStore store(env, layout.snap_dir, 1);
  auto files = store.List();
  if (!files.ok()) return Fail(files.status());
  int rc = kOk;
  for (const SnapshotFile& f : *files) {
    auto snap = store.Load(f.path);
    if (!snap.ok()) {
      std::printf("CORRUPT %s\n", snap.status().message().c_str());
      rc = kCorrupt;
    } else if (print) {
      std::printf(
          "snapshot %s: index=%llu term=%llu voters=%zu data=%zu bytes\n",
          f.path.c_str(), static_cast<unsigned long long>(f.index),
          static_cast<unsigned long long>(f.term),
          snap->metadata.conf_state.voters.size(), snap->data.size());
    }
  }
  return rc;
}

int Dump(const std::string& dir) {
  Env* env = Env::Posix();
  Layout layout;
  int rc = kOk;
  if (!FindLayout(env, dir, &layout, &rc)) return rc;
  Problem p;
  rc = ScanAll(env, layout, /*print=*/true, &p);
  int snap_rc = CheckSnapshots(env, layout, /*print=*/true);
  return rc != kOk ? rc : snap_rc;
}

int Verify(const std::string& dir) {
  Env* env = Env::Posix();
  Layout layout;
  int rc = kOk;
  if (!FindLayout(env, dir, &layout, &rc)) return rc;
  Problem p;
  rc = ScanAll(env, layout, /*print=*/false, &p);
  int snap_rc = CheckSnapshots(env, layout, /*print=*/false);
  if (rc == kOk && snap_rc == kOk) {
    std::printf("OK %zu segment(s) in %s\n", layout.segments.size(),
                layout.wal_dir.c_str());
  }
  return rc != kOk ? rc : snap_rc;
}

int Repair(const std::string& dir, bool yes) {
  Env* env = Env::Posix();
  Layout layout;
  int rc = kOk;
  if (!FindLayout(env, dir, &layout, &rc)) return rc;
  Problem p;
  rc = ScanAll(env, layout, /*print=*/false, &p);
  if (rc == kOk) {
    std::printf("nothing to repair\n");
    return kOk;
  }
  if (rc == kError) return rc;
  if (!p.last) {
    std::printf(
        "refusing: the damage is not in the last segment, so cutting it "
        "would drop every later record; restore this member from a peer\n");
    return kCorrupt;
  }
  auto size = env->FileSize(p.path);
  if (!size.ok()) return Fail(size.status());
  std::printf("would cut %s at offset %llu, dropping %llu byte(s) after it\n",
              p.path.c_str(), static_cast<unsigned long long>(p.scan.valid_end),
              static_cast<unsigned long long>(*size - p.scan.valid_end));
  if (!yes) {
    std::printf("re-run with --yes to do it\n");
    return kUnconfirmed;
  }
  auto f = env->OpenWritable(p.path, /*truncate=*/false);
  if (!f.ok()) return Fail(f.status());
  // Zeros after the cut, as preallocation leaves them, so the segment
  // reads as cleanly ended.
  Status s = (*f)->Truncate(p.scan.valid_end);
  if (s.ok()) s = (*f)->Allocate(*size);
  if (s.ok()) s = (*f)->Sync();
  if (s.ok()) s = (*f)->Close();
  if (!s.ok()) return Fail(s);
  std::printf("repaired\n");
  return kOk;
}

}  // namespace
}  // namespace keel::wal

int main(int argc, char** argv) {
  CLI::App app{"keel-wal: inspect, verify and repair a keel write-ahead log"};
  app.require_subcommand(1);
  std::string dir;
  bool yes = false;
  auto* dump = app.add_subcommand("dump", "print every record");
  dump->add_option("dir", dir, "data or wal directory")->required();
  auto* verify = app.add_subcommand(
      "verify", "check every record and snapshot (exit 0: intact)");
  verify->add_option("dir", dir, "data or wal directory")->required();
  auto* repair = app.add_subcommand(
      "repair", "cut a damaged tail of the last segment (needs --yes)");
  repair->add_option("dir", dir, "data or wal directory")->required();
  repair->add_flag("--yes", yes, "really truncate");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 3;
  }
  if (*dump) return keel::wal::Dump(dir);
  if (*verify) return keel::wal::Verify(dir);
  return keel::wal::Repair(dir, yes);
}

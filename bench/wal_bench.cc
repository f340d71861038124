// WAL group-commit benchmark: appends per second and p50/p99 latency with
// 1, 16 and 256 concurrent appenders (each append waits until durable, so
// fdatasync is on the path), next to the raw limit of the same disk in the
// same run: a loop of one write plus one fdatasync.
//
//   keel_wal_bench [--dir=D] [--seconds=S] [--payload=BYTES]
//
// The directory defaults to $KEEL_WAL_BENCH_DIR, else ./wal_bench_data in
// the current directory (not /tmp, which is often tmpfs and would measure
// memory). The run prints the directory and its file system type.
//
// Thread safety: single process; each appender thread owns its samples.

#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "wal/env.h"
#include "wal/wal.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  uint64_t count = 0;
};

Result Summarize(std::vector<double> lat_us, double seconds) {
  Result r;
  r.count = lat_us.size();
  if (lat_us.empty()) return r;
  std::sort(lat_us.begin(), lat_us.end());
  r.per_second = static_cast<double>(lat_us.size()) / seconds;
  r.p50_us = lat_us[lat_us.size() / 2];
  r.p99_us = lat_us[std::min(lat_us.size() - 1, lat_us.size() * 99 / 100)];
  return r;
}

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The disk's own limit: write one record-sized block, fdatasync, repeat,
// into a preallocated file (as the WAL does).
Result RawWriteFdatasync(const std::string& dir, double seconds,
                         size_t payload) {
  std::string path = dir + "/raw.bench";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0 || ::posix_fallocate(fd, 0, 64 << 20) != 0) {
    std::perror("raw file");
    std::exit(1);
  }
  ::fdatasync(fd);
  std::string buf(payload + 16, 'x');
  std::vector<double> lat;
  off_t off = 0;
  auto end = Clock::now() + std::chrono::duration<double>(seconds);
  auto start = Clock::now();
  while (Clock::now() < end) {
    auto t0 = Clock::now();
    if (::pwrite(fd, buf.data(), buf.size(), off) < 0 || ::fdatasync(fd) != 0) {
      std::perror("raw write");
      std::exit(1);
    }
    lat.push_back(Micros(Clock::now() - t0));
    off = (off + static_cast<off_t>(buf.size())) % (60 << 20);
  }
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  return Summarize(std::move(lat), took);
}

Result WalAppends(const std::string& dir, int appenders, double seconds,
                  size_t payload) {
  std::filesystem::remove_all(dir);
  keel::wal::WalOptions o;
  o.dir = dir;
  o.background_writer = true;
  auto wal = keel::wal::Wal::Open(keel::wal::Env::Posix(), o, [](const auto&) {
    return keel::Status::OK();
  });
  if (!wal.ok()) {
    std::fprintf(stderr, "open: %s\n", wal.status().ToString().c_str());
    std::exit(1);
  }
  keel::wal::Wal* w = wal->get();
  std::atomic<uint64_t> next_index{1};
  std::atomic<bool> go{false};
  std::vector<std::vector<double>> samples(appenders);
  std::vector<std::thread> threads;
  const std::string data(payload, 'v');
  auto end = Clock::now() + std::chrono::duration<double>(seconds + 0.2);
  for (int t = 0; t < appenders; t++) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      while (Clock::now() < end) {
        keel::wal::WalBatch b;
        b.AddEntry(
            {1, next_index.fetch_add(1), keel::raft::EntryType::kNormal, data});
        auto t0 = Clock::now();
        auto lsn = w->Submit(std::move(b), nullptr);
        if (!lsn.ok() || !w->WaitDurable(*lsn).ok()) {
          std::fprintf(stderr, "append failed\n");
          std::exit(1);
        }
        samples[t].push_back(Micros(Clock::now() - t0));
      }
    });
  }
  auto start = Clock::now();
  go = true;
  for (auto& th : threads) th.join();
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  (void)w->Close();
  std::vector<double> all;
  for (auto& s : samples) all.insert(all.end(), s.begin(), s.end());
  std::filesystem::remove_all(dir);
  return Summarize(std::move(all), took);
}

std::string FsType(const std::string& dir) {
  struct statfs s;
  if (::statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0x01021994:
      return "tmpfs (memory! not a disk measurement)";
    case 0xEF53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794c7630:
      return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "0x%lx",
                    static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  if (const char* e = std::getenv("KEEL_WAL_BENCH_DIR")) dir = e;
  double seconds = 3;
  size_t payload = 256;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0)
      dir = a.substr(6);
    else if (a.rfind("--seconds=", 0) == 0)
      seconds = std::stod(a.substr(10));
    else if (a.rfind("--payload=", 0) == 0)
      payload = std::stoul(a.substr(10));
    else {
      std::fprintf(stderr, "usage: %s [--dir=D] [--seconds=S] [--payload=B]\n",
                   argv[0]);
      return 2;
    }
  }
  if (dir.empty())
    dir = std::filesystem::current_path().string() + "/wal_bench_data";
  std::filesystem::create_directories(dir);
  std::printf(
      "directory: %s\nfile system: %s\npayload: %zu bytes, %.1f s per "
      "run, fdatasync on every durable append\n\n",
      dir.c_str(), FsType(dir).c_str(), payload, seconds);

  Result raw = RawWriteFdatasync(dir, seconds, payload);
  std::printf("%-28s %12s %10s %10s\n", "", "per second", "p50 us", "p99 us");
  std::printf("%-28s %12.0f %10.1f %10.1f\n", "raw write+fdatasync",
              raw.per_second, raw.p50_us, raw.p99_us);
  Result r1;
  Result r16;
  for (int n : {1, 16, 256}) {
    Result r = WalAppends(dir + "/wal", n, seconds, payload);
    if (n == 1) r1 = r;
    if (n == 16) r16 = r;
    char label[64];
    std::snprintf(label, sizeof(label), "wal, %d appender%s", n,
                  n == 1 ? "" : "s");
    std::printf("%-28s %12.0f %10.1f %10.1f\n", label, r.per_second, r.p50_us,
                r.p99_us);
  }
  std::printf(
      "\n1 appender p50 / raw p50: %.2fx (target <= 1.3x)\n"
      "16 appenders rate / raw rate: %.1fx (target >= 10x)\n",
      r1.p50_us / raw.p50_us, r16.per_second / raw.per_second);
  std::filesystem::remove_all(dir);
  return 0;
}

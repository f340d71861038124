#include "sim/sim_runner.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>

namespace keel::sim {
namespace {

// The seed being run, for the fatal-signal handler: an abort inside the core
// must still name the seed that replays it.
volatile uint64_t g_current_seed = 0;
volatile sig_atomic_t g_running = 0;

void WriteAll(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Async-signal-safe: no allocation, no stdio.
void OnFatalSignal(int sig) {
  if (g_running) {
    char digits[24];
    int n = 0;
    uint64_t v = g_current_seed;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    char buf[160];
    size_t len = 0;
    const char* a = "\nsim: seed ";
    for (const char* p = a; *p; p++) buf[len++] = *p;
    for (int i = n - 1; i >= 0; i--) buf[len++] = digits[i];
    const char* b = " crashed the process; replay: keel-sim --seed ";
    for (const char* p = b; *p; p++) buf[len++] = *p;
    for (int i = n - 1; i >= 0; i--) buf[len++] = digits[i];
    buf[len++] = '\n';
    WriteAll(2, buf, len);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallFatalHandlers() {
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
    signal(sig, OnFatalSignal);
  }
}

// SimStats as a list, to send over a pipe and sum.
std::vector<uint64_t*> Fields(SimStats* s) {
  return {&s->ticks,
          &s->steps,
          &s->messages,
          &s->dropped,
          &s->leaders,
          &s->proposals,
          &s->proposals_refused,
          &s->proposals_timed_out,
          &s->writes_committed,
          &s->reads,
          &s->reads_served,
          &s->crashes,
          &s->io_crashes,
          &s->commit_below_snapshot,
          &s->pauses,
          &s->conf_changes_proposed,
          &s->conf_changes_applied,
          &s->transfers,
          &s->snapshots_installed,
          &s->members_added,
          &s->members_removed,
          &s->liveness_ticks};
}

void Accumulate(SimStats* total, SimStats s) {
  auto t = Fields(total);
  auto v = Fields(&s);
  for (size_t i = 0; i < t.size(); i++) *t[i] += *v[i];
}

SimResult RunOne(uint64_t seed, const RunnerOptions& options) {
  g_current_seed = seed;
  g_running = 1;
  SimOptions so;
  so.inject = options.inject;
  SimResult r = RunSimulation(seed, so);
  g_running = 0;
  return r;
}

std::string ResultLine(const SimResult& r) {
  std::string s =
      fmt::format("{} {} {} {}", r.ok ? 'P' : 'F', r.seed,
                  r.params.lease_reads ? 1 : 0, r.params.wal_disk ? 1 : 0);
  SimStats st = r.stats;
  for (uint64_t* f : Fields(&st)) s += fmt::format(" {}", *f);
  // The violation last, after a tab; it is one line.
  std::string v = r.failure;
  std::replace(v.begin(), v.end(), '\n', ' ');
  return s + "\t" + v + "\n";
}

class Progress {
 public:
  Progress(const RunnerOptions& o, std::ostream& out)
      : o_(o), out_(out), start_(Clock::now()), last_(start_) {}
  double Elapsed() const {
    return std::chrono::duration<double>(Clock::now() - start_).count();
  }
  void Maybe(const RunnerSummary& s) {
    if (o_.progress_seconds <= 0) return;
    auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_).count() <
        o_.progress_seconds) {
      return;
    }
    last_ = now;
    out_ << fmt::format("sim: {}/{} seeds done, {} failed, {:.1f}s\n",
                        s.passed + s.failed, o_.count, s.failed, Elapsed())
         << std::flush;
  }

 private:
  using Clock = std::chrono::steady_clock;
  const RunnerOptions& o_;
  std::ostream& out_;
  Clock::time_point start_;
  Clock::time_point last_;
};

void Record(const SimResult& r, RunnerSummary* s) {
  if (r.ok) {
    s->passed++;
  } else {
    s->failed++;
    s->failed_seeds.push_back(r.seed);
    s->violations.push_back(r.failure);
  }
  if (r.params.lease_reads) s->lease_read_seeds++;
  if (r.params.wal_disk) s->wal_disk_seeds++;
  Accumulate(&s->totals, r.stats);
}

void ReportFailure(uint64_t seed, const RunnerOptions& options,
                   std::ostream& out) {
  SimOptions so;
  so.inject = options.inject;
  so.trace_capacity = options.verbose ? SIZE_MAX : options.trace_tail;
  g_current_seed = seed;
  g_running = 1;
  SimResult r = RunSimulation(seed, so);
  g_running = 0;
  PrintFailure(r, options, out);
}

RunnerSummary RunSequential(const RunnerOptions& o, std::ostream& out) {
  RunnerSummary s;
  Progress progress(o, out);
  for (uint64_t i = 0; i < o.count; i++) {
    SimResult r = RunOne(o.first_seed + i, o);
    Record(r, &s);
    if (!r.ok) ReportFailure(r.seed, o, out);
    progress.Maybe(s);
  }
  s.seconds = progress.Elapsed();
  return s;
}

struct Worker {
  pid_t pid = -1;
  int fd = -1;
  uint64_t next = 0;  // the next seed (offset from first_seed) it will run
  std::string buffer;
};

// Runs seed offsets next, next + stride, ... below count, one result line
// per seed on fd.
[[noreturn]] void WorkerMain(const RunnerOptions& o, uint64_t next,
                             uint64_t stride, int fd) {
  for (uint64_t i = next; i < o.count; i += stride) {
    std::string line = ResultLine(RunOne(o.first_seed + i, o));
    WriteAll(fd, line.data(), line.size());
  }
  _exit(0);
}

void Spawn(const RunnerOptions& o, uint64_t stride, Worker* w,
           std::ostream& out) {
  int fds[2];
  KEEL_CHECK(pipe(fds) == 0) << strerror(errno);
  out.flush();
  pid_t pid = fork();
  KEEL_CHECK(pid >= 0) << strerror(errno);
  if (pid == 0) {
    close(fds[0]);
    if (o.quiet_workers) {
      int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) dup2(null_fd, 2);
    }
    WorkerMain(o, w->next, stride, fds[1]);
  }
  close(fds[1]);
  w->pid = pid;
  w->fd = fds[0];
  w->buffer.clear();
}

RunnerSummary RunForked(const RunnerOptions& o, std::ostream& out) {
  RunnerSummary s;
  Progress progress(o, out);
  uint64_t stride = static_cast<uint64_t>(o.jobs);
  std::vector<Worker> workers(o.jobs);
  std::vector<uint64_t> crashed;
  for (int j = 0; j < o.jobs; j++) {
    workers[j].next = static_cast<uint64_t>(j);
    if (workers[j].next < o.count) Spawn(o, stride, &workers[j], out);
  }
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<int> which;
    for (int j = 0; j < o.jobs; j++) {
      if (workers[j].fd >= 0) {
        pfds.push_back({workers[j].fd, POLLIN, 0});
        which.push_back(j);
      }
    }
    if (pfds.empty()) break;
    int n = poll(pfds.data(), pfds.size(), 1000);
    if (n < 0 && errno != EINTR) KEEL_CHECK(false) << strerror(errno);
    for (size_t k = 0; k < pfds.size(); k++) {
      if (pfds[k].revents == 0) continue;
      Worker& w = workers[which[k]];
      char buf[4096];
      ssize_t got = read(w.fd, buf, sizeof(buf));
      if (got > 0) {
        w.buffer.append(buf, static_cast<size_t>(got));
        size_t nl;
        while ((nl = w.buffer.find('\n')) != std::string::npos) {
          std::string text = w.buffer.substr(0, nl);
          w.buffer.erase(0, nl + 1);
          size_t tab = text.find('\t');
          std::istringstream line(text.substr(0, tab));
          char kind;
          SimResult r;
          int lease, wal;
          line >> kind >> r.seed >> lease >> wal;
          r.ok = kind == 'P';
          r.params.lease_reads = lease != 0;
          r.params.wal_disk = wal != 0;
          for (uint64_t* f : Fields(&r.stats)) line >> *f;
          if (tab != std::string::npos) r.failure = text.substr(tab + 1);
          Record(r, &s);
          w.next += stride;
        }
        continue;
      }
      // End of stream: the worker finished, or died on the seed it was
      // running (which then counts as failed), in which case a fresh worker
      // takes the rest of its seeds.
      close(w.fd);
      w.fd = -1;
      int status = 0;
      waitpid(w.pid, &status, 0);
      bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!clean && w.next < o.count) {
        uint64_t seed = o.first_seed + w.next;
        out << fmt::format(
            "sim: seed {} killed its worker (status {}); replay: {} --seed "
            "{}\n",
            seed, status, o.replay_command, seed);
        s.failed++;
        s.failed_seeds.push_back(seed);
        s.violations.push_back("crashed");
        crashed.push_back(seed);
        w.next += stride;
      }
      if (!clean && w.next < o.count) Spawn(o, stride, &w, out);
    }
    progress.Maybe(s);
  }
  // Failures that did not kill the process replay here, with a trace.
  int reported = 0;
  for (uint64_t seed : s.failed_seeds) {
    if (std::find(crashed.begin(), crashed.end(), seed) != crashed.end()) {
      continue;
    }
    if (reported++ == 5) {
      out << "sim: (more failures not replayed)\n";
      break;
    }
    ReportFailure(seed, o, out);
  }
  s.seconds = progress.Elapsed();
  return s;
}

}  // namespace

std::string RunnerSummary::Line() const {
  return fmt::format("sim: {} seeds passed, {} failed in {:.1f}s", passed,
                     failed, seconds);
}

RunnerSummary RunSeeds(const RunnerOptions& options, std::ostream& out) {
  InstallFatalHandlers();
  if (options.jobs <= 1 || options.count <= 1) {
    return RunSequential(options, out);
  }
  return RunForked(options, out);
}

void PrintFailure(const SimResult& r, const RunnerOptions& options,
                  std::ostream& out) {
  out << fmt::format("\n==== sim: seed {} FAILED\n", r.seed);
  out << "violation: " << r.failure << "\n";
  out << "params: " << r.params.Describe() << "\n";
  out << "state:\n" << r.state;
  out << fmt::format("last {} events:\n", r.trace.size());
  for (const std::string& e : r.trace) out << "  " << e << "\n";
  out << fmt::format("replay: {} --seed {} --verbose\n", options.replay_command,
                     r.seed);
  out << fmt::format("==== end of seed {}\n", r.seed) << std::flush;
}

}  // namespace keel::sim

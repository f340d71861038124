// keel: one member of a keel cluster, serving the etcd v3 API.
//
// Flags and ETCD_* variables as etcd's (src/server/config.h). With no
// flags: a single member named "default" on localhost:2379 (clients) and
// localhost:2380 (peers), data in ./default.etcd. SIGINT/SIGTERM stop it
// cleanly; kill -9 loses nothing that was acknowledged.
#include <absl/synchronization/mutex.h>
#include <execinfo.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "api/services.h"
#include "cmd/keel_debug.h"
#include "cmd/keel_member.h"
#include "common/log.h"
#include "server/config.h"
#include "server/server.h"

namespace {

// `keel snapshot restore FILE [etcd's restore flags]`: like `etcdctl
// snapshot restore`, for the files keel's Maintenance.Snapshot streams
// (etcdctl cannot read them: they are not bbolt databases).
int SnapshotMain(int argc, char** argv) {
  if (argc < 4 || std::string(argv[2]) != "restore") {
    std::fprintf(stderr,
                 "usage: keel snapshot restore FILE [--name NAME] [--data-dir "
                 "DIR] [--initial-cluster NAME=URL,...] "
                 "[--initial-cluster-token TOKEN] "
                 "[--initial-advertise-peer-urls URLS]\n");
    return 2;
  }
  const std::string file = argv[3];
  std::vector<const char*> args = {argv[0]};
  for (int i = 4; i < argc; i++) args.push_back(argv[i]);
  auto config =
      keel::server::ParseFlags(static_cast<int>(args.size()), args.data());
  if (!config.ok()) {
    std::fprintf(stderr, "keel snapshot restore: %s\n",
                 config.status().message().c_str());
    return 1;
  }
  keel::Status st = keel::server::Server::RestoreDataDir(*config, file);
  if (!st.ok()) {
    std::fprintf(stderr, "Error: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}

// A member that dies on a failed check, an assertion inside a library
// (Debian's RocksDB and Abseil keep theirs) or a bad access prints its
// stack first, so the log shows where, not just that, it stopped.
void PrintStackAndDie(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  static const char kHead[] = "keel: fatal signal; stack:\n";
  (void)!write(STDERR_FILENO, kHead, sizeof(kHead) - 1);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallCrashStacks() {
  void* warm[1];
  backtrace(warm, 1);  // loads libgcc now: not in the signal handler
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
    struct sigaction sa = {};
    sa.sa_handler = PrintStackAndDie;
    sa.sa_flags = SA_RESETHAND;
    sigaction(sig, &sa, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "snapshot") {
    return SnapshotMain(argc, argv);
  }
  if (argc >= 2 && std::string(argv[1]) == "debug") {
    return keel::cmd::DebugMain(argc, argv);
  }
  if (argc >= 2 && std::string(argv[1]) == "member") {
    return keel::cmd::MemberMain(argc, argv);
  }
  // Debian builds Abseil without NDEBUG, so every absl::Mutex that gRPC
  // takes also maintains a lock-order graph for deadlock detection; it cost
  // ~3% of a loaded member's CPU (perf). Not a check keel relies on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  InstallCrashStacks();
  auto config = keel::server::ParseFlags(argc, argv);
  if (!config.ok()) {
    if (config.status().IsNotFound()) {  // --help, --version
      std::printf("%s\n", config.status().message().c_str());
      return 0;
    }
    std::fprintf(stderr, "keel: %s\n", config.status().message().c_str());
    return 1;
  }
  keel::Status logging = keel::log::Configure(
      config->log_level, config->log_format, config->log_outputs);
  if (!logging.ok()) {
    std::fprintf(stderr, "keel: %s\n", logging.message().c_str());
    return 1;
  }

  // Signals are taken synchronously by this thread, so block them before
  // any other thread starts (threads inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = keel::server::Server::Open(*config);
  if (!server.ok()) {
    spdlog::critical("cannot start member {}: {}", config->name,
                     server.status().message());
    return 1;
  }
  // A removed member stops, as etcd's does.
  (*server)->set_on_removed([] { kill(getpid(), SIGTERM); });
  keel::Status st = (*server)->Start();
  if (!st.ok()) {
    spdlog::critical("cannot start member {}: {}", config->name, st.message());
    return 1;
  }
  auto api = keel::api::ClientApi::Start(server->get());
  if (!api.ok()) {
    spdlog::critical("cannot start member {}: {}", config->name,
                     api.status().message());
    (*server)->Stop();
    return 1;
  }
  spdlog::info("keel member {} ({:x}) of cluster {:x} is ready", config->name,
               (*server)->member_id(), (*server)->cluster_id());
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received signal {}, stopping", sig);
  (*api)->Shutdown();
  (*server)->Stop();
  return 0;
}

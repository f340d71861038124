#include "etcd_process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"

namespace keel::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Asks the kernel for a free loopback port. Another process may take it
// before etcd binds it; Start() retries with new ports if etcd exits.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A short per-call deadline for readiness polling, never past the overall
// one. gRPC takes deadlines on the system clock only.
std::chrono::system_clock::time_point CallDeadline(Clock::time_point overall) {
  auto left = std::min<Clock::duration>(overall - Clock::now(),
                                        std::chrono::milliseconds(250));
  return std::chrono::system_clock::now() +
         std::max<Clock::duration>(left, Clock::duration::zero());
}

const char* EtcdBinary() {
  // Lets a developer point the test at another etcd build.
  const char* env = std::getenv("KEEL_ETCD");
  return env != nullptr && *env != '\0' ? env : EtcdProcess::kDefaultBinary;
}

}  // namespace

std::unique_ptr<EtcdProcess> EtcdProcess::Start(
    std::string* error, std::chrono::milliseconds ready_timeout) {
  const std::string binary = EtcdBinary();
  if (access(binary.c_str(), X_OK) != 0) {
    *error = "etcd is not installed (no executable " + binary +
             "); run scripts/setup.sh, which installs Debian's etcd-server "
             "and etcd-client";
    return nullptr;
  }

  const auto deadline = Clock::now() + ready_timeout;
  std::string last_error;
  // A port picked by FreePort() can be stolen before etcd binds it; then
  // etcd exits at once and we try again with fresh ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdProcess> p(new EtcdProcess());
    std::string tmpl = (fs::temp_directory_path() / "keel-etcd-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      *error = std::string("mkdtemp: ") + std::strerror(errno);
      return nullptr;
    }
    p->data_root_ = tmpl;
    const int client_port = FreePort();
    const int peer_port = FreePort();
    if (client_port < 0 || peer_port < 0 || client_port == peer_port) {
      last_error = "could not find free loopback ports";
      continue;
    }
    p->name_ = "keel-proto-test";
    p->client_address_ = "127.0.0.1:" + std::to_string(client_port);
    p->client_url_ = "http://" + p->client_address_;
    p->peer_url_ = "http://127.0.0.1:" + std::to_string(peer_port);

    std::vector<std::string> args = {
        binary,
        "--name=" + p->name_,
        "--data-dir=" + p->data_root_ + "/data",
        "--listen-client-urls=" + p->client_url_,
        "--advertise-client-urls=" + p->client_url_,
        "--listen-peer-urls=" + p->peer_url_,
        "--initial-advertise-peer-urls=" + p->peer_url_,
        "--initial-cluster=" + p->name_ + "=" + p->peer_url_,
        "--initial-cluster-state=new",
        // A lone member elects itself after one election timeout; keep it
        // short so tests start fast.
        "--heartbeat-interval=10",
        "--election-timeout=50",
        "--logger=zap",
    };
    const std::string log_path = p->data_root_ + "/etcd.log";
    // Built before fork(): the child of a threaded process (gRPC has
    // threads) may only make async-signal-safe calls, so no malloc there.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    pid_t pid = fork();
    if (pid < 0) {
      *error = std::string("fork: ") + std::strerror(errno);
      return nullptr;
    }
    if (pid == 0) {
      // Child: die with the test process even if it is killed outright, so
      // no etcd outlives a crashed test.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    p->pid_ = pid;

    grpc::ChannelArguments channel_args;
    // A proxy from the environment (http_proxy) must not see loopback calls.
    channel_args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    // The first connect usually beats etcd to its port; gRPC's default
    // reconnect backoff (1 s) would then dominate the start-up time.
    channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
    channel_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
    channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
    p->channel_ = grpc::CreateCustomChannel(
        p->client_address_, grpc::InsecureChannelCredentials(), channel_args);
    auto maintenance = etcdserverpb::Maintenance::NewStub(p->channel_);
    auto kv = etcdserverpb::KV::NewStub(p->channel_);

    // Poll until etcd has a leader and answers a linearizable read. Each
    // call blocks for at most its own short deadline (wait_for_ready waits
    // for the port to open), so this loop waits without sleeping.
    bool exited = false;
    while (Clock::now() < deadline) {
      int wstatus = 0;
      if (waitpid(p->pid_, &wstatus, WNOHANG) == p->pid_) {
        p->pid_ = -1;
        exited = true;
        break;
      }
      grpc::ClientContext status_ctx;
      status_ctx.set_wait_for_ready(true);
      status_ctx.set_deadline(CallDeadline(deadline));
      etcdserverpb::StatusResponse status;
      grpc::Status s = maintenance->Status(
          &status_ctx, etcdserverpb::StatusRequest(), &status);
      if (!s.ok() || status.leader() == 0) continue;
      // A linearizable read needs a committed entry of the leader's term;
      // until then etcd holds the call, which again waits without spinning.
      grpc::ClientContext range_ctx;
      range_ctx.set_deadline(CallDeadline(deadline));
      etcdserverpb::RangeRequest req;
      req.set_key("health");
      etcdserverpb::RangeResponse resp;
      if (kv->Range(&range_ctx, req, &resp).ok()) return p;
    }
    last_error = exited ? "etcd exited during start-up"
                        : "etcd was not ready within " +
                              std::to_string(ready_timeout.count()) + " ms";
    last_error +=
        " (" + binary + " at " + p->client_url_ + "); its log:\n" + p->Log();
    if (!exited) break;  // Out of time; no point retrying.
  }
  *error = last_error;
  return nullptr;
}

EtcdProcess::~EtcdProcess() {
  Kill();
  if (!data_root_.empty()) {
    std::error_code ec;
    fs::remove_all(data_root_, ec);
  }
}

void EtcdProcess::Kill() {
  if (pid_ > 0) {
    // SIGKILL: the data dir is thrown away, so a clean shutdown buys
    // nothing, and waitpid() then returns at once.
    kill(pid_, SIGKILL);
    int wstatus = 0;
    waitpid(pid_, &wstatus, 0);
    pid_ = -1;
  }
}

std::string EtcdProcess::Log() const {
  return ReadFile(data_root_ + "/etcd.log");
}

}  // namespace keel::test

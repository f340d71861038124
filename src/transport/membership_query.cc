#include "transport/membership_query.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "transport/wire.h"

namespace keel::transport {

namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int MsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for fd to be ready for `events` before the deadline.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, MsLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

Result<MembershipAnswer> QueryMembership(const std::string& url,
                                         std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto hp = ParseUrl(url);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::Unavailable("resolving " + url + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  Status last = Status::Unavailable("no address for " + url);
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family,
                   ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   ai->ai_protocol));
    if (fd.get() < 0) continue;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
      last = Status::Unavailable("connecting to " + url + ": " +
                                 std::strerror(errno));
      continue;
    }
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      last = Status::Unavailable("connecting to " + url + ": timed out");
      continue;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = Status::Unavailable("connecting to " + url + ": " +
                                 std::strerror(err));
      continue;
    }
    Hello h;
    h.kind = StreamKind::kMembers;
    std::string out;
    EncodeHello(h, &out);
    size_t off = 0;
    while (off < out.size()) {
      if (!WaitFor(fd.get(), POLLOUT, deadline)) break;
      ssize_t n =
          ::send(fd.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno != EINTR && errno != EAGAIN) break;
      if (n > 0) off += static_cast<size_t>(n);
    }
    if (off < out.size()) {
      last = Status::Unavailable("sending to " + url + " failed");
      continue;
    }
    // Read until the peer closes: the answer and one frame.
    std::string in;
    char buf[16384];
    bool eof = false;
    while (!eof && WaitFor(fd.get(), POLLIN, deadline)) {
      ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
      if (n == 0) eof = true;
      if (n > 0) in.append(buf, static_cast<size_t>(n));
      if (n < 0 && errno != EINTR && errno != EAGAIN) break;
    }
    if (in.size() < kHelloAckSize) {
      last = Status::Unavailable("no membership answer from " + url);
      continue;
    }
    HelloAck ack;
    KEEL_RETURN_IF_ERROR(
        DecodeHelloAck(std::string_view(in).substr(0, kHelloAckSize), &ack));
    if (ack.code != AckCode::kOk) {
      return Status::FailedPrecondition(
          url + " refused the membership query: " + AckCodeName(ack.code));
    }
    FrameDecoder dec;
    dec.Append(in.data() + kHelloAckSize, in.size() - kHelloAckSize);
    Frame f;
    std::string error;
    if (dec.Next(&f, &error) != FrameDecoder::State::kFrame ||
        f.type != FrameType::kMembers) {
      last = Status::Unavailable("truncated membership answer from " + url +
                                 (error.empty() ? "" : ": " + error));
      continue;
    }
    return MembershipAnswer{ack.cluster_id, ack.member_id, std::move(f.body)};
  }
  return last;
}

}  // namespace keel::transport

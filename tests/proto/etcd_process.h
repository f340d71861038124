// A real, single-member etcd for tests: started on free loopback ports with
// a fresh data dir, killed (and its data dir removed) when this object goes
// away, including when a test fails half-way.
//
// Thread safety: not thread-safe; one owner.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

namespace keel::test {

class EtcdProcess {
 public:
  // Where Debian's etcd-server package installs the server.
  static constexpr const char* kDefaultBinary = "/usr/bin/etcd";

  // Starts etcd and waits (by polling, up to `ready_timeout`) until it has a
  // leader and serves linearizable reads. On failure returns nullptr and sets
  // *error to a message fit for a test failure (including etcd's log).
  static std::unique_ptr<EtcdProcess> Start(
      std::string* error,
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(20));

  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // "127.0.0.1:PORT", for grpc::CreateChannel.
  const std::string& client_address() const { return client_address_; }
  // The URLs etcd was told to advertise (what MemberList reports).
  const std::string& client_url() const { return client_url_; }
  const std::string& peer_url() const { return peer_url_; }
  const std::string& name() const { return name_; }
  // A channel to the client port; gRPC proxies are disabled on it.
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // etcd's combined stdout/stderr so far.
  std::string Log() const;

 private:
  EtcdProcess() = default;
  void Kill();

  pid_t pid_ = -1;
  std::string data_root_;  // Temp dir holding the data dir and the log.
  std::string name_;
  std::string client_address_;
  std::string client_url_;
  std::string peer_url_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace keel::test

// The etcd v3 Election and Lock services (etcd's v3election and v3lock).
//
// As etcd, they are recipes over this member's own KV, Lease and Watch API
// (clientv3/concurrency): a candidate or waiter puts `<name>/<lease hex>`
// attached to its lease, the smallest create revision under `<name>/` is
// the leader or holder, and the others wait, by watching, for the deletion
// of the key with the next lower create revision. The calls go through an
// in-process gRPC channel to this member's own services, so that their
// semantics (linearizable reads, errors, watch) are exactly the public
// ones; the child calls inherit the caller's deadline and cancellation.
//
// Thread safety: handlers run on gRPC's threads. A Lock or Campaign that
// waits, and an Observe, hold one of gRPC's sync threads while waiting
// (as etcd holds a goroutine).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace keel::api {

// etcd's concurrency recipes over a channel to the v3 API.
class Recipes {
 public:
  // Every call takes the server call it serves (its deadline and
  // cancellation pass on to the child call), or null for a call of its own
  // (a cleanup after the caller went away).

  // Sets the channel (made once the server is built).
  void Connect(std::shared_ptr<grpc::Channel> ch);

  // A lease to campaign or lock with: `lease`, or a new one of etcd's
  // default session TTL (60 s) when 0.
  grpc::Status Session(const grpc::ServerContextBase* ctx, int64_t lease,
                       int64_t* out);
  grpc::Status Txn(const grpc::ServerContextBase* ctx,
                   const etcdserverpb::TxnRequest& r,
                   etcdserverpb::TxnResponse* out);
  grpc::Status Range(const grpc::ServerContextBase* ctx,
                     const etcdserverpb::RangeRequest& r,
                     etcdserverpb::RangeResponse* out);
  grpc::Status Delete(const grpc::ServerContextBase* ctx,
                      const std::string& key,
                      etcdserverpb::DeleteRangeResponse* out);
  // Waits until no key under `prefix` has a create revision up to
  // `max_create_rev` (clientv3 concurrency's waitDeletes); *hdr is the
  // header of the last read.
  grpc::Status WaitDeletes(const grpc::ServerContextBase* ctx,
                           const std::string& prefix, int64_t max_create_rev,
                           etcdserverpb::ResponseHeader* hdr);
  // Waits for the deletion of `key`, watching from revision `rev`.
  grpc::Status WaitDelete(const grpc::ServerContextBase* ctx,
                          const std::string& key, int64_t rev);
  // The range of the first-created (limit 1, ascending) or last-created key
  // under prefix.
  static etcdserverpb::RangeRequest Top(const std::string& prefix, bool first);
  etcdserverpb::Watch::Stub* watch() { return watch_.get(); }
  static std::unique_ptr<grpc::ClientContext> Child(
      const grpc::ServerContextBase* ctx);

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
};

class LockService final : public v3lockpb::Lock::Service {
 public:
  explicit LockService(Recipes* r) : r_(r) {}
  grpc::Status Lock(grpc::ServerContext*, const v3lockpb::LockRequest*,
                    v3lockpb::LockResponse*) override;
  grpc::Status Unlock(grpc::ServerContext*, const v3lockpb::UnlockRequest*,
                      v3lockpb::UnlockResponse*) override;

 private:
  Recipes* r_;
};

class ElectionService final : public v3electionpb::Election::Service {
 public:
  explicit ElectionService(Recipes* r) : r_(r) {}
  grpc::Status Campaign(grpc::ServerContext*,
                        const v3electionpb::CampaignRequest*,
                        v3electionpb::CampaignResponse*) override;
  grpc::Status Proclaim(grpc::ServerContext*,
                        const v3electionpb::ProclaimRequest*,
                        v3electionpb::ProclaimResponse*) override;
  grpc::Status Leader(grpc::ServerContext*, const v3electionpb::LeaderRequest*,
                      v3electionpb::LeaderResponse*) override;
  grpc::Status Observe(
      grpc::ServerContext*, const v3electionpb::LeaderRequest*,
      grpc::ServerWriter<v3electionpb::LeaderResponse>*) override;
  grpc::Status Resign(grpc::ServerContext*, const v3electionpb::ResignRequest*,
                      v3electionpb::ResignResponse*) override;

 private:
  Recipes* r_;
};

}  // namespace keel::api

// Server's part of auth: loading and persisting the auth state, proposing
// auth changes and Authenticate, and the permission check at apply that
// makes a revoke take effect for every write ordered after it in the log.
#include <thread>

#include "api/errors.h"
#include "server/server.h"

namespace keel::server {
namespace {

thread_local const internal::AuthHeader* t_request_auth = nullptr;

constexpr const char* kAuthAux = "auth";

Status EtcdErr(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

// Puts of a txn, nested ones included.
void CollectPuts(const etcdserverpb::TxnRequest& r,
                 std::vector<const etcdserverpb::PutRequest*>* out) {
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const auto& op : *ops) {
      if (op.has_request_put()) out->push_back(&op.request_put());
      if (op.has_request_txn()) CollectPuts(op.request_txn(), out);
    }
  }
}

}  // namespace

ScopedRequestAuth::ScopedRequestAuth(const internal::AuthHeader* h)
    : prev_(t_request_auth) {
  t_request_auth = h;
}

ScopedRequestAuth::~ScopedRequestAuth() { t_request_auth = prev_; }

void Server::StampRequestAuth(internal::Request* req) {
  if (t_request_auth != nullptr) *req->mutable_auth() = *t_request_auth;
}

Status Server::LoadAuth() {
  if (!auth_) {
    TokenProviderDeps deps;
    deps.wait_applied = [this](uint64_t index,
                               std::chrono::steady_clock::time_point deadline) {
      // Rare (a token made a moment ago through another member): poll.
      while (AppliedIndex() < index) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      return true;
    };
    auto tp = MakeTokenProvider(
        config_.security.auth_token,
        std::chrono::seconds(config_.security.auth_token_ttl_s), deps);
    if (!tp.ok()) {
      return Status::InvalidArgument("--auth-token " +
                                     config_.security.auth_token + ": " +
                                     tp.status().message());
    }
    auth_ = std::make_unique<AuthStore>(std::move(tp).value());
  }
  auto blob = store_->GetAux(kAuthAux);
  if (!blob.ok() && !blob.status().IsNotFound()) return blob.status();
  Status s = auth_->Load(blob.ok() ? *blob : "");
  if (!s.ok()) {
    return Status::Corruption("auth state in the key-value store: " +
                              s.message());
  }
  return Status::OK();
}

Status Server::CheckAuthAtApply(const internal::Request& req) {
  // Requests the member makes itself (lease expiry) carry no header.
  if (!req.has_auth() || !auth_->enabled()) return Status::OK();
  const AuthInfo ai{req.auth().username(), req.auth().auth_revision()};
  // A lease whose keys the user may not write cannot be revoked by it, nor
  // attached to another key (etcd's checkLeasePuts).
  auto lease_puts = [&](int64_t lease) -> Status {
    if (lease == 0) return Status::OK();
    for (const auto& k : store_->LeaseKeys(lease)) {
      KEEL_RETURN_IF_ERROR(auth_->IsPutPermitted(ai, k));
    }
    return Status::OK();
  };
  if (req.has_put()) {
    KEEL_RETURN_IF_ERROR(auth_->CheckPut(ai, req.put()));
    return lease_puts(req.put().lease());
  }
  if (req.has_delete_range()) {
    return auth_->CheckDeleteRange(ai, req.delete_range());
  }
  if (req.has_txn()) {
    KEEL_RETURN_IF_ERROR(auth_->CheckTxn(ai, req.txn()));
    std::vector<const etcdserverpb::PutRequest*> puts;
    CollectPuts(req.txn(), &puts);
    for (const auto* p : puts) KEEL_RETURN_IF_ERROR(lease_puts(p->lease()));
    return Status::OK();
  }
  if (req.has_lease_revoke()) return lease_puts(req.lease_revoke().id());
  return Status::OK();
}

bool Server::ApplyAuth(const internal::Request& req, mvcc::ConsistentIndex ci,
                       ApplyResult* result) {
  if (AuthStore::IsAuthOp(req)) {
    result->status = auth_->Apply(req, ci.index, &result->auth_token);
    // Persisted even when refused: the applied index moves either way.
    // Authenticate changes nothing that is stored (tokens live in memory).
    Status st = req.has_authenticate()
                    ? store_->SetConsistentIndex(ci)
                    : store_->PutAux(kAuthAux, auth_->Serialize(), ci);
    KEEL_CHECK(st.ok()) << "persisting the auth state: " << st.ToString();
    result->revision = store_->CurrentRevision();
    return true;
  }
  Status s = CheckAuthAtApply(req);
  if (s.ok()) return false;
  result->status = s;
  Status st = store_->SetConsistentIndex(ci);
  KEEL_CHECK(st.ok()) << "recording applied index: " << st.ToString();
  return true;
}

Status Server::ProposeAuth(internal::Request req, int64_t* revision) {
  auto r = ProposeAndWait(std::move(req));
  if (!r.ok()) return r.status();
  if (!(*r)->status.ok()) return (*r)->status;
  *revision = (*r)->revision;
  return Status::OK();
}

Status Server::AuthReadBarrier() { return WaitReadIndex(); }

Status Server::Authenticate(const std::string& name,
                            const std::string& password, std::string* token,
                            int64_t* revision) {
  // etcd retries while the auth revision moves under the password check.
  for (int attempt = 0; attempt < 5; attempt++) {
    if (!auth_->enabled()) return EtcdErr(api::kErrAuthNotEnabled);
    auto checked = auth_->CheckPassword(name, password);  // bcrypt: here
    if (!checked.ok()) return checked.status();
    auto prefix = auth_->GenTokenPrefix();
    if (!prefix.ok()) return prefix.status();
    internal::Request req;
    auto* a = req.mutable_authenticate();
    a->set_name(name);
    a->set_simple_token_prefix(*prefix);
    a->set_checked_revision(*checked);
    auto r = ProposeAndWait(std::move(req));
    if (!r.ok()) return r.status();
    if ((*r)->status.code() == Status::Code::kAborted) continue;
    if (!(*r)->status.ok()) return (*r)->status;
    *token = (*r)->auth_token;
    *revision = (*r)->revision;
    return Status::OK();
  }
  return EtcdErr(api::kErrAuthOldRevision);
}

}  // namespace keel::server

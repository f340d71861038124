// AuthStore: etcd's v3 auth state (users, roles, key permissions, the
// enabled flag and the auth revision) and the checks made with it, with
// etcd's semantics and error messages (auth/store.go).
//
// The state changes only by applying replicated requests (Apply), on the
// apply thread; the Server then persists Serialize() with the applied index
// (Store::PutAux), so every member holds the same state at the same index
// and a member restored from a snapshot has the same users. Every change of
// users, roles or permissions bumps the revision (enable/disable do not, as
// in etcd).
//
// A check is made for an AuthInfo: the user and the auth revision its
// credential is bound to (a simple token or a client certificate: the
// current revision when the request arrived; a JWT: the revision at issue).
// As etcd's isOpPermitted: revision 0 (no user given) is "user name is
// empty"; a revision older than the current one is "revision of auth store
// is old" (the client authenticates again); then the permissions are those
// of now. Writes carry their AuthInfo through the log and are checked again
// at apply, so a permission revoked before a write in the log refuses it.
//
// Thread safety: all methods are thread-safe (one shared mutex; checks take
// it shared). Passwords are hashed and checked without the lock.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "authpb/auth.pb.h"
#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"
#include "server/auth_token.h"
#include "server/internal.pb.h"

namespace keel::server {

// bcrypt, as etcd stores passwords ("$2b$<cost>$..."; crypt_r from
// libxcrypt). Tens of milliseconds at cost 10: never on the Raft loop.
Result<std::string> HashPassword(const std::string& password, int cost);
bool PasswordMatches(const std::string& password, const std::string& hash);

struct AuthInfo {
  std::string user;
  uint64_t revision = 0;  // 0: no user given
};

// Does the txn (any branch, nested included) write?
bool TxnHasWrites(const etcdserverpb::TxnRequest& r);

// etcd's auth errors as the auth package words them (the Maintenance
// service sends these unconverted: code Unknown, "auth: permission denied").
Status RawAuthError(const Status& s);

class AuthStore {
 public:
  explicit AuthStore(std::unique_ptr<TokenProvider> tokens);

  // ---- State (apply thread) ----
  Status Load(const std::string& blob);  // "" = the empty store
  std::string Serialize() const;
  static bool IsAuthOp(const internal::Request& req);
  // Applies one auth op of `req` at Raft index `index`, after checking
  // that req.auth() may (root once auth is on; Authenticate needs nothing).
  // *token: the token an Authenticate made.
  Status Apply(const internal::Request& req, uint64_t index,
               std::string* token);

  // ---- Credentials (any thread) ----
  bool enabled() const;
  uint64_t revision() const;
  Result<AuthInfo> InfoFromToken(std::string_view token);
  // The current revision for a user known by its certificate.
  AuthInfo InfoFromCommonName(const std::string& cn) const;
  // Checks the password (bcrypt, without the lock); returns the revision
  // it was checked at.
  Result<uint64_t> CheckPassword(const std::string& name,
                                 const std::string& password) const;
  Result<std::string> GenTokenPrefix() { return tokens_->GenTokenPrefix(); }

  // ---- Permission checks (any thread; OK when auth is off) ----
  Status IsRangePermitted(const AuthInfo& ai, const std::string& key,
                          const std::string& range_end) const;
  Status IsPutPermitted(const AuthInfo& ai, const std::string& key) const;
  Status IsDeleteRangePermitted(const AuthInfo& ai, const std::string& key,
                                const std::string& range_end) const;
  Status IsAdminPermitted(const AuthInfo& ai) const;
  Status CheckRange(const AuthInfo& ai,
                    const etcdserverpb::RangeRequest& r) const;
  Status CheckPut(const AuthInfo& ai, const etcdserverpb::PutRequest& r) const;
  Status CheckDeleteRange(const AuthInfo& ai,
                          const etcdserverpb::DeleteRangeRequest& r) const;
  // Compares need read; every op of both branches (nested txns too) its
  // own permission (etcd's checkTxnAuth).
  Status CheckTxn(const AuthInfo& ai, const etcdserverpb::TxnRequest& r) const;

  // ---- Reads for the Auth service ----
  // etcd lets a user read itself and the roles it has without root.
  Status UserGet(const AuthInfo& ai, const std::string& name,
                 etcdserverpb::AuthUserGetResponse* out) const;
  Status UserList(const AuthInfo& ai,
                  etcdserverpb::AuthUserListResponse* out) const;
  Status RoleGet(const AuthInfo& ai, const std::string& name,
                 etcdserverpb::AuthRoleGetResponse* out) const;
  Status RoleList(const AuthInfo& ai,
                  etcdserverpb::AuthRoleListResponse* out) const;

 private:
  enum class Perm { kRead, kWrite };
  Status ApplyLocked(const internal::Request& req, uint64_t index,
                     std::string* token);
  Status IsOpPermittedLocked(const AuthInfo& ai, const std::string& key,
                             const std::string& range_end, Perm p) const;
  Status IsAdminPermittedLocked(const AuthInfo& ai) const;
  Status CheckTxnLocked(const AuthInfo& ai,
                        const etcdserverpb::TxnRequest& r) const;
  bool IsRootLocked(const std::string& user) const;

  const std::unique_ptr<TokenProvider> tokens_;
  mutable std::shared_mutex mu_;
  // Atomic so that every request's enabled()/revision() check needs no
  // lock; written only with mu_ held exclusively.
  std::atomic<bool> enabled_{false};
  std::atomic<uint64_t> revision_{1};
  std::map<std::string, authpb::User> users_;  // guarded by mu_
  std::map<std::string, authpb::Role> roles_;  // guarded by mu_
};

}  // namespace keel::server

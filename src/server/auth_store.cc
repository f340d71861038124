#include "server/auth_store.h"

#include <crypt.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>

#include "api/errors.h"

namespace keel::server {
namespace {

constexpr const char* kRoot = "root";

Status Err(const api::EtcdError& e) {
  return Status::FailedPrecondition(e.message);
}

// A half-open key interval; end nullopt = no upper bound.
struct Interval {
  std::string begin;
  std::optional<std::string> end;
};

// etcd's key range conventions: range_end "" is the single key, "\0" every
// key from key on.
Interval ToInterval(const std::string& key, const std::string& range_end) {
  if (range_end.empty()) return {key, key + std::string(1, '\0')};
  if (range_end == std::string(1, '\0')) return {key, std::nullopt};
  return {key, range_end};
}

// a < b, with nullopt as +infinity.
bool EndLess(const std::optional<std::string>& a,
             const std::optional<std::string>& b) {
  if (!a) return false;
  if (!b) return true;
  return *a < *b;
}

bool HasRole(const authpb::User& u, const std::string& role) {
  return std::find(u.roles().begin(), u.roles().end(), role) != u.roles().end();
}

}  // namespace

bool TxnHasWrites(const etcdserverpb::TxnRequest& r) {
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const auto& op : *ops) {
      if (op.has_request_put() || op.has_request_delete_range()) return true;
      if (op.has_request_txn() && TxnHasWrites(op.request_txn())) return true;
    }
  }
  return false;
}

Status RawAuthError(const Status& s) {
  static const std::pair<const char*, const char*> kRaw[] = {
      {api::kErrPermissionDenied.message, "auth: permission denied"},
      {api::kErrUserEmpty.message, "auth: user name is empty"},
      {api::kErrUserNotFound.message, "auth: user not found"},
      {api::kErrInvalidAuthToken.message, "auth: invalid auth token"},
      {api::kErrAuthOldRevision.message, "auth: revision in header is old"},
  };
  for (const auto& [etcdserver, raw] : kRaw) {
    if (s.message() == etcdserver) return Status::FailedPrecondition(raw);
  }
  return s;
}

Result<std::string> HashPassword(const std::string& password, int cost) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // Null random bytes: libxcrypt draws the salt from the OS.
  if (crypt_gensalt_rn("$2b$", cost, nullptr, 0, setting, sizeof(setting)) ==
      nullptr) {
    return Status::IOError("bcrypt: cannot make a salt");
  }
  crypt_data data{};
  const char* h = crypt_r(password.c_str(), setting, &data);
  if (h == nullptr || h[0] == '*') {
    return Status::IOError("bcrypt: cannot hash the password");
  }
  return std::string(h);
}

bool PasswordMatches(const std::string& password, const std::string& hash) {
  if (hash.empty()) return false;
  crypt_data data{};
  const char* h = crypt_r(password.c_str(), hash.c_str(), &data);
  if (h == nullptr || h[0] == '*') return false;
  const size_t n = std::strlen(h);
  return n == hash.size() && CRYPTO_memcmp(h, hash.data(), n) == 0;
}

AuthStore::AuthStore(std::unique_ptr<TokenProvider> tokens)
    : tokens_(std::move(tokens)) {}

bool AuthStore::IsAuthOp(const internal::Request& req) {
  using R = internal::Request;
  switch (req.op_case()) {
    case R::kAuthEnable:
    case R::kAuthDisable:
    case R::kAuthUserAdd:
    case R::kAuthUserDelete:
    case R::kAuthUserChangePassword:
    case R::kAuthUserGrantRole:
    case R::kAuthUserRevokeRole:
    case R::kAuthRoleAdd:
    case R::kAuthRoleDelete:
    case R::kAuthRoleGrantPermission:
    case R::kAuthRoleRevokePermission:
    case R::kAuthenticate:
      return true;
    default:
      return false;
  }
}

Status AuthStore::Load(const std::string& blob) {
  internal::AuthState st;
  if (!blob.empty() && !st.ParseFromString(blob)) {
    return Status::Corruption("undecodable auth state");
  }
  bool was_enabled, enabled;
  {
    std::unique_lock l(mu_);
    was_enabled = enabled_;
    enabled_ = st.enabled();
    // etcd's auth revision starts at 1 in a new store.
    revision_ = blob.empty() ? 1 : st.revision();
    users_.clear();
    roles_.clear();
    for (auto& u : *st.mutable_users()) users_[u.name()] = std::move(u);
    for (auto& r : *st.mutable_roles()) roles_[r.name()] = std::move(r);
    enabled = enabled_;
  }
  // A member restored from a snapshot keeps the tokens it knows while auth
  // stays on (as etcd's Recover); those of deleted users or changed
  // passwords are refused by the revision and user checks.
  if (!enabled) {
    tokens_->Disable();
  } else if (!was_enabled) {
    tokens_->Enable();
  }
  return Status::OK();
}

std::string AuthStore::Serialize() const {
  std::shared_lock l(mu_);
  internal::AuthState st;
  st.set_enabled(enabled_);
  st.set_revision(revision_);
  for (const auto& [_, u] : users_) *st.add_users() = u;
  for (const auto& [_, r] : roles_) *st.add_roles() = r;
  return st.SerializeAsString();
}

bool AuthStore::enabled() const { return enabled_.load(); }

uint64_t AuthStore::revision() const { return revision_.load(); }

Result<AuthInfo> AuthStore::InfoFromToken(std::string_view token) {
  auto info = tokens_->Info(token, revision());
  if (!info.ok()) return Err(api::kErrInvalidAuthToken);
  return AuthInfo{info->user, info->auth_revision};
}

AuthInfo AuthStore::InfoFromCommonName(const std::string& cn) const {
  return AuthInfo{cn, revision()};
}

Status AuthStore::Apply(const internal::Request& req, uint64_t index,
                        std::string* token) {
  std::unique_lock l(mu_);
  if (!req.has_authenticate()) {
    // Auth management needs root once auth is on, as of this point in the
    // log (etcd's authApplierV3 needAdminPermission).
    AuthInfo ai{req.auth().username(), req.auth().auth_revision()};
    KEEL_RETURN_IF_ERROR(IsAdminPermittedLocked(ai));
  }
  return ApplyLocked(req, index, token);
}

Status AuthStore::ApplyLocked(const internal::Request& req, uint64_t index,
                              std::string* token) {
  using R = internal::Request;
  switch (req.op_case()) {
    case R::kAuthEnable: {
      if (enabled_) return Status::OK();
      auto it = users_.find(kRoot);
      if (it == users_.end()) return Err(api::kErrRootUserNotExist);
      if (!HasRole(it->second, kRoot)) return Err(api::kErrRootRoleNotExist);
      enabled_ = true;
      tokens_->Enable();
      return Status::OK();
    }
    case R::kAuthDisable:
      if (!enabled_) return Status::OK();
      enabled_ = false;
      tokens_->Disable();
      return Status::OK();
    case R::kAuthUserAdd: {
      const auto& r = req.auth_user_add();
      if (r.name().empty()) return Err(api::kErrUserEmpty);
      if (users_.count(r.name())) return Err(api::kErrUserAlreadyExist);
      authpb::User u;
      u.set_name(r.name());
      if (!r.options().no_password()) u.set_password(r.hashedpassword());
      *u.mutable_options() = r.options();
      users_[r.name()] = std::move(u);
      revision_++;
      return Status::OK();
    }
    case R::kAuthUserDelete: {
      const auto& name = req.auth_user_delete().name();
      if (enabled_ && name == kRoot) return Err(api::kErrInvalidAuthMgmt);
      if (!users_.erase(name)) return Err(api::kErrUserNotFound);
      tokens_->InvalidateUser(name);
      revision_++;
      return Status::OK();
    }
    case R::kAuthUserChangePassword: {
      const auto& r = req.auth_user_change_password();
      auto it = users_.find(r.name());
      if (it == users_.end()) return Err(api::kErrUserNotFound);
      it->second.set_password(r.hashedpassword());
      tokens_->InvalidateUser(r.name());
      revision_++;
      return Status::OK();
    }
    case R::kAuthUserGrantRole: {
      const auto& r = req.auth_user_grant_role();
      auto it = users_.find(r.user());
      if (it == users_.end()) return Err(api::kErrUserNotFound);
      if (r.role() != kRoot && !roles_.count(r.role())) {
        return Err(api::kErrRoleNotFound);
      }
      if (HasRole(it->second, r.role())) return Status::OK();
      auto* roles = it->second.mutable_roles();
      roles->Add(std::string(r.role()));
      std::sort(roles->begin(), roles->end());
      revision_++;
      return Status::OK();
    }
    case R::kAuthUserRevokeRole: {
      const auto& r = req.auth_user_revoke_role();
      if (enabled_ && r.name() == kRoot && r.role() == kRoot) {
        return Err(api::kErrInvalidAuthMgmt);
      }
      auto it = users_.find(r.name());
      if (it == users_.end()) return Err(api::kErrUserNotFound);
      auto* roles = it->second.mutable_roles();
      auto pos = std::find(roles->begin(), roles->end(), r.role());
      if (pos == roles->end()) return Err(api::kErrRoleNotGranted);
      roles->erase(pos);
      revision_++;
      return Status::OK();
    }
    case R::kAuthRoleAdd: {
      const auto& name = req.auth_role_add().name();
      if (name.empty()) return Err(api::kErrRoleEmpty);
      if (roles_.count(name)) return Err(api::kErrRoleAlreadyExist);
      roles_[name].set_name(name);
      revision_++;
      return Status::OK();
    }
    case R::kAuthRoleDelete: {
      const auto& name = req.auth_role_delete().role();
      if (enabled_ && name == kRoot) return Err(api::kErrInvalidAuthMgmt);
      if (!roles_.erase(name)) return Err(api::kErrRoleNotFound);
      for (auto& [_, u] : users_) {
        auto* roles = u.mutable_roles();
        roles->erase(std::remove(roles->begin(), roles->end(), name),
                     roles->end());
      }
      revision_++;
      return Status::OK();
    }
    case R::kAuthRoleGrantPermission: {
      const auto& r = req.auth_role_grant_permission();
      if (!r.has_perm()) return Err(api::kErrPermissionNotGiven);
      auto it = roles_.find(r.name());
      if (it == roles_.end()) return Err(api::kErrRoleNotFound);
      auto* perms = it->second.mutable_keypermission();
      bool updated = false;
      for (auto& p : *perms) {
        if (p.key() == r.perm().key() &&
            p.range_end() == r.perm().range_end()) {
          p.set_permtype(r.perm().permtype());
          updated = true;
        }
      }
      if (!updated) {
        *perms->Add() = r.perm();
        std::stable_sort(
            perms->begin(), perms->end(),
            [](const auto& a, const auto& b) { return a.key() < b.key(); });
      }
      revision_++;
      return Status::OK();
    }
    case R::kAuthRoleRevokePermission: {
      const auto& r = req.auth_role_revoke_permission();
      auto it = roles_.find(r.role());
      if (it == roles_.end()) return Err(api::kErrRoleNotFound);
      auto* perms = it->second.mutable_keypermission();
      auto pos = std::find_if(perms->begin(), perms->end(), [&](const auto& p) {
        return p.key() == r.key() && p.range_end() == r.range_end();
      });
      if (pos == perms->end()) return Err(api::kErrPermissionNotGranted);
      perms->erase(pos);
      revision_++;
      return Status::OK();
    }
    case R::kAuthenticate: {
      const auto& r = req.authenticate();
      if (!enabled_) return Err(api::kErrAuthNotEnabled);
      if (!users_.count(r.name())) return Err(api::kErrAuthFailed);
      // The password was checked at another revision (say, before a
      // password change): the proposer checks again.
      if (r.checked_revision() != revision_) {
        return Status::Aborted("auth revision changed");
      }
      auto t = tokens_->Assign(r.name(), revision_,
                               AssignContext{r.simple_token_prefix(), index});
      if (!t.ok()) return t.status();
      if (token) *token = std::move(t).value();
      return Status::OK();
    }
    default:
      return Status::InvalidArgument("not an auth request");
  }
}

Result<uint64_t> AuthStore::CheckPassword(const std::string& name,
                                          const std::string& password) const {
  std::string hash;
  uint64_t rev;
  {
    std::shared_lock l(mu_);
    auto it = users_.find(name);
    if (it == users_.end() || it->second.options().no_password()) {
      return Err(api::kErrAuthFailed);
    }
    hash = it->second.password();
    rev = revision_;
  }
  // bcrypt takes tens of milliseconds: not under the lock.
  if (!PasswordMatches(password, hash)) return Err(api::kErrAuthFailed);
  return rev;
}

bool AuthStore::IsRootLocked(const std::string& user) const {
  auto it = users_.find(user);
  return it != users_.end() && HasRole(it->second, kRoot);
}

Status AuthStore::IsOpPermittedLocked(const AuthInfo& ai,
                                      const std::string& key,
                                      const std::string& range_end,
                                      Perm p) const {
  if (!enabled_) return Status::OK();
  if (ai.revision == 0) return Err(api::kErrUserEmpty);
  if (ai.revision < revision_) return Err(api::kErrAuthOldRevision);
  auto uit = users_.find(ai.user);
  if (uit == users_.end()) return Err(api::kErrPermissionDenied);
  if (HasRole(uit->second, kRoot)) return Status::OK();
  std::vector<Interval> have;
  for (const auto& role : uit->second.roles()) {
    auto rit = roles_.find(role);
    if (rit == roles_.end()) continue;
    for (const auto& perm : rit->second.keypermission()) {
      const bool grants =
          perm.permtype() == authpb::Permission::READWRITE ||
          (p == Perm::kRead ? perm.permtype() == authpb::Permission::READ
                            : perm.permtype() == authpb::Permission::WRITE);
      if (grants) have.push_back(ToInterval(perm.key(), perm.range_end()));
    }
  }
  std::sort(have.begin(), have.end(), [](const Interval& a, const Interval& b) {
    return a.begin < b.begin;
  });
  // Merges overlapping and adjacent intervals, so that a request spanning
  // two permissions that touch is covered (etcd's interval tree Contains).
  std::vector<Interval> merged;
  for (auto& iv : have) {
    if (!merged.empty() &&
        (!merged.back().end || iv.begin <= *merged.back().end)) {
      if (EndLess(merged.back().end, iv.end)) merged.back().end = iv.end;
    } else {
      merged.push_back(std::move(iv));
    }
  }
  const Interval want = ToInterval(key, range_end);
  for (const auto& iv : merged) {
    if (iv.begin <= want.begin && !EndLess(iv.end, want.end)) {
      return Status::OK();
    }
  }
  return Err(api::kErrPermissionDenied);
}

Status AuthStore::IsRangePermitted(const AuthInfo& ai, const std::string& key,
                                   const std::string& range_end) const {
  std::shared_lock l(mu_);
  return IsOpPermittedLocked(ai, key, range_end, Perm::kRead);
}

Status AuthStore::IsPutPermitted(const AuthInfo& ai,
                                 const std::string& key) const {
  std::shared_lock l(mu_);
  return IsOpPermittedLocked(ai, key, "", Perm::kWrite);
}

Status AuthStore::IsDeleteRangePermitted(const AuthInfo& ai,
                                         const std::string& key,
                                         const std::string& range_end) const {
  std::shared_lock l(mu_);
  return IsOpPermittedLocked(ai, key, range_end, Perm::kWrite);
}

Status AuthStore::CheckRange(const AuthInfo& ai,
                             const etcdserverpb::RangeRequest& r) const {
  return IsRangePermitted(ai, r.key(), r.range_end());
}

Status AuthStore::CheckPut(const AuthInfo& ai,
                           const etcdserverpb::PutRequest& r) const {
  std::shared_lock l(mu_);
  KEEL_RETURN_IF_ERROR(IsOpPermittedLocked(ai, r.key(), "", Perm::kWrite));
  if (r.prev_kv()) {
    KEEL_RETURN_IF_ERROR(IsOpPermittedLocked(ai, r.key(), "", Perm::kRead));
  }
  return Status::OK();
}

Status AuthStore::CheckDeleteRange(
    const AuthInfo& ai, const etcdserverpb::DeleteRangeRequest& r) const {
  std::shared_lock l(mu_);
  if (r.prev_kv()) {
    KEEL_RETURN_IF_ERROR(
        IsOpPermittedLocked(ai, r.key(), r.range_end(), Perm::kRead));
  }
  return IsOpPermittedLocked(ai, r.key(), r.range_end(), Perm::kWrite);
}

Status AuthStore::CheckTxnLocked(const AuthInfo& ai,
                                 const etcdserverpb::TxnRequest& r) const {
  for (const auto& c : r.compare()) {
    KEEL_RETURN_IF_ERROR(
        IsOpPermittedLocked(ai, c.key(), c.range_end(), Perm::kRead));
  }
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const auto& op : *ops) {
      if (op.has_request_range()) {
        const auto& x = op.request_range();
        KEEL_RETURN_IF_ERROR(
            IsOpPermittedLocked(ai, x.key(), x.range_end(), Perm::kRead));
      } else if (op.has_request_put()) {
        const auto& x = op.request_put();
        KEEL_RETURN_IF_ERROR(
            IsOpPermittedLocked(ai, x.key(), "", Perm::kWrite));
        if (x.prev_kv()) {
          KEEL_RETURN_IF_ERROR(
              IsOpPermittedLocked(ai, x.key(), "", Perm::kRead));
        }
      } else if (op.has_request_delete_range()) {
        const auto& x = op.request_delete_range();
        if (x.prev_kv()) {
          KEEL_RETURN_IF_ERROR(
              IsOpPermittedLocked(ai, x.key(), x.range_end(), Perm::kRead));
        }
        KEEL_RETURN_IF_ERROR(
            IsOpPermittedLocked(ai, x.key(), x.range_end(), Perm::kWrite));
      } else if (op.has_request_txn()) {
        // etcd 3.4 does not look into nested txns; keel does.
        KEEL_RETURN_IF_ERROR(CheckTxnLocked(ai, op.request_txn()));
      }
    }
  }
  return Status::OK();
}

Status AuthStore::CheckTxn(const AuthInfo& ai,
                           const etcdserverpb::TxnRequest& r) const {
  std::shared_lock l(mu_);
  if (!enabled_) return Status::OK();
  return CheckTxnLocked(ai, r);
}

Status AuthStore::IsAdminPermittedLocked(const AuthInfo& ai) const {
  if (!enabled_) return Status::OK();
  if (ai.user.empty()) return Err(api::kErrUserEmpty);
  auto it = users_.find(ai.user);
  if (it == users_.end()) return Err(api::kErrUserNotFound);
  return HasRole(it->second, kRoot) ? Status::OK()
                                    : Err(api::kErrPermissionDenied);
}

Status AuthStore::IsAdminPermitted(const AuthInfo& ai) const {
  std::shared_lock l(mu_);
  return IsAdminPermittedLocked(ai);
}

Status AuthStore::UserGet(const AuthInfo& ai, const std::string& name,
                          etcdserverpb::AuthUserGetResponse* out) const {
  std::shared_lock l(mu_);
  if (Status s = IsAdminPermittedLocked(ai); !s.ok() && name != ai.user) {
    return s;
  }
  auto it = users_.find(name);
  if (it == users_.end()) return Err(api::kErrUserNotFound);
  for (const auto& r : it->second.roles()) out->add_roles(r);
  return Status::OK();
}

Status AuthStore::UserList(const AuthInfo& ai,
                           etcdserverpb::AuthUserListResponse* out) const {
  std::shared_lock l(mu_);
  KEEL_RETURN_IF_ERROR(IsAdminPermittedLocked(ai));
  for (const auto& [name, _] : users_) out->add_users(name);
  return Status::OK();
}

Status AuthStore::RoleGet(const AuthInfo& ai, const std::string& name,
                          etcdserverpb::AuthRoleGetResponse* out) const {
  std::shared_lock l(mu_);
  if (Status s = IsAdminPermittedLocked(ai); !s.ok()) {
    auto u = users_.find(ai.user);
    if (u == users_.end() || !HasRole(u->second, name)) return s;
  }
  auto it = roles_.find(name);
  if (it == roles_.end()) return Err(api::kErrRoleNotFound);
  for (const auto& p : it->second.keypermission()) *out->add_perm() = p;
  return Status::OK();
}

Status AuthStore::RoleList(const AuthInfo& ai,
                           etcdserverpb::AuthRoleListResponse* out) const {
  std::shared_lock l(mu_);
  KEEL_RETURN_IF_ERROR(IsAdminPermittedLocked(ai));
  for (const auto& [name, _] : roles_) out->add_roles(name);
  return Status::OK();
}

}  // namespace keel::server

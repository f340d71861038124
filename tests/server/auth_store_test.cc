// AuthStore: etcd's permission range logic, the revision binding of
// credentials, the root rules and persistence.
#include "server/auth_store.h"

#include <gtest/gtest.h>

#include "api/errors.h"

namespace keel::server {
namespace {

using authpb::Permission;

class AuthStoreTest : public ::testing::Test {
 protected:
  AuthStoreTest() {
    auto tp = MakeTokenProvider("simple", std::chrono::seconds(300), {});
    store_ = std::make_unique<AuthStore>(std::move(tp).value());
  }

  Status Apply(internal::Request req) {
    req.mutable_auth()->set_username(admin_);
    req.mutable_auth()->set_auth_revision(store_->revision());
    std::string token;
    return store_->Apply(req, ++index_, &token);
  }
  void Ok(internal::Request req) {
    Status s = Apply(std::move(req));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  internal::Request UserAdd(const std::string& name) {
    internal::Request r;
    r.mutable_auth_user_add()->set_name(name);
    r.mutable_auth_user_add()->set_hashedpassword(
        HashPassword("pw-" + name, 4).value());
    return r;
  }
  internal::Request Grant(const std::string& user, const std::string& role) {
    internal::Request r;
    r.mutable_auth_user_grant_role()->set_user(user);
    r.mutable_auth_user_grant_role()->set_role(role);
    return r;
  }
  internal::Request RoleAdd(const std::string& name) {
    internal::Request r;
    r.mutable_auth_role_add()->set_name(name);
    return r;
  }
  internal::Request Perm(const std::string& role, Permission::Type t,
                         const std::string& key, const std::string& end) {
    internal::Request r;
    auto* g = r.mutable_auth_role_grant_permission();
    g->set_name(role);
    g->mutable_perm()->set_permtype(t);
    g->mutable_perm()->set_key(key);
    g->mutable_perm()->set_range_end(end);
    return r;
  }
  internal::Request Enable() {
    internal::Request r;
    r.mutable_auth_enable();
    return r;
  }
  // root/root, alice with role r, auth on.
  void SetUpUsers() {
    Ok(UserAdd("root"));
    Ok(Grant("root", "root"));
    Ok(UserAdd("alice"));
    Ok(RoleAdd("r"));
    Ok(Grant("alice", "r"));
    Ok(Enable());
    admin_ = "root";
  }
  AuthInfo Alice() const { return {"alice", store_->revision()}; }
  std::string Msg(const Status& s) const { return s.message(); }

  std::unique_ptr<AuthStore> store_;
  std::string admin_;
  uint64_t index_ = 0;
};

TEST_F(AuthStoreTest, EnableNeedsRootUserAndRole) {
  EXPECT_EQ(Msg(Apply(Enable())), api::kErrRootUserNotExist.message);
  Ok(UserAdd("root"));
  EXPECT_EQ(Msg(Apply(Enable())), api::kErrRootRoleNotExist.message);
  Ok(Grant("root", "root"));
  Ok(Enable());
  EXPECT_TRUE(store_->enabled());
  // Now only root administers (checked at apply).
  admin_ = "alice";
  EXPECT_EQ(Msg(Apply(RoleAdd("x"))), api::kErrUserNotFound.message);
  admin_ = "";
  EXPECT_EQ(Msg(Apply(RoleAdd("x"))), api::kErrUserEmpty.message);
}

TEST_F(AuthStoreTest, PermissionRanges) {
  SetUpUsers();
  Ok(Perm("r", Permission::READ, "a", "c"));       // [a, c)
  Ok(Perm("r", Permission::READWRITE, "c", "e"));  // [c, e), adjacent
  Ok(Perm("r", Permission::WRITE, "k", ""));       // the key k
  Ok(Perm("r", Permission::READ, "z", std::string(1, '\0')));  // from z on
  const AuthInfo a = Alice();
  auto read = [&](const std::string& k, const std::string& e) {
    return store_->IsRangePermitted(a, k, e).ok();
  };
  auto write = [&](const std::string& k, const std::string& e) {
    return store_->IsDeleteRangePermitted(a, k, e).ok();
  };
  EXPECT_TRUE(read("a", ""));
  EXPECT_TRUE(read("b", "bz"));
  EXPECT_TRUE(read("a", "e"));  // spans two adjacent permissions
  EXPECT_FALSE(read("a", "f"));
  EXPECT_FALSE(read("0", "b"));
  EXPECT_FALSE(read("e", ""));
  EXPECT_FALSE(write("a", ""));  // read only
  EXPECT_TRUE(write("c", "e"));
  EXPECT_TRUE(store_->IsPutPermitted(a, "k").ok());
  EXPECT_FALSE(store_->IsPutPermitted(a, "k0").ok());
  EXPECT_FALSE(read("k", ""));  // write only
  EXPECT_TRUE(read("zz", std::string(1, '\0')));
  EXPECT_TRUE(read("z", ""));
  EXPECT_FALSE(read("y", std::string(1, '\0')));
  EXPECT_EQ(Msg(store_->IsRangePermitted(a, "x", "")),
            api::kErrPermissionDenied.message);
  // Root reads everything.
  EXPECT_TRUE(
      store_->IsRangePermitted({"root", store_->revision()}, "", "\0").ok());
}

TEST_F(AuthStoreTest, TxnChecksComparesAndBothBranches) {
  SetUpUsers();
  Ok(Perm("r", Permission::READWRITE, "a", "b"));
  etcdserverpb::TxnRequest t;
  t.add_compare()->set_key("a1");
  t.add_success()->mutable_request_range()->set_key("a2");
  t.add_failure()->mutable_request_put()->set_key("a3");
  EXPECT_TRUE(store_->CheckTxn(Alice(), t).ok());
  auto only_compare = t;
  only_compare.mutable_compare(0)->set_key("x");
  EXPECT_FALSE(store_->CheckTxn(Alice(), only_compare).ok());
  auto only_failure = t;
  only_failure.mutable_failure(0)->mutable_request_put()->set_key("x");
  EXPECT_FALSE(store_->CheckTxn(Alice(), only_failure).ok());
  auto nested = t;
  nested.add_success()
      ->mutable_request_txn()
      ->add_success()
      ->mutable_request_delete_range()
      ->set_key("x");
  EXPECT_FALSE(store_->CheckTxn(Alice(), nested).ok());
}

TEST_F(AuthStoreTest, CredentialsAreBoundToTheAuthRevision) {
  SetUpUsers();
  Ok(Perm("r", Permission::READ, "a", "b"));
  const AuthInfo before = Alice();
  EXPECT_TRUE(store_->IsRangePermitted(before, "a", "").ok());
  // Any change makes older credentials old: the client authenticates again
  // and is checked against the permissions of now.
  Ok(RoleAdd("unrelated"));
  EXPECT_EQ(Msg(store_->IsRangePermitted(before, "a", "")),
            api::kErrAuthOldRevision.message);
  internal::Request revoke;
  revoke.mutable_auth_user_revoke_role()->set_name("alice");
  revoke.mutable_auth_user_revoke_role()->set_role("r");
  Ok(revoke);
  EXPECT_EQ(Msg(store_->IsRangePermitted(Alice(), "a", "")),
            api::kErrPermissionDenied.message);
  EXPECT_EQ(Msg(store_->IsRangePermitted({"alice", 0}, "a", "")),
            api::kErrUserEmpty.message);
}

TEST_F(AuthStoreTest, RootRulesAndTokens) {
  SetUpUsers();
  internal::Request del;
  del.mutable_auth_user_delete()->set_name("root");
  EXPECT_EQ(Msg(Apply(del)), api::kErrInvalidAuthMgmt.message);
  internal::Request revoke;
  revoke.mutable_auth_user_revoke_role()->set_name("root");
  revoke.mutable_auth_user_revoke_role()->set_role("root");
  EXPECT_EQ(Msg(Apply(revoke)), api::kErrInvalidAuthMgmt.message);
  // Authenticate makes a simple token every member knows; deleting the
  // user kills it.
  EXPECT_TRUE(store_->CheckPassword("alice", "pw-alice").ok());
  EXPECT_EQ(Msg(store_->CheckPassword("alice", "nope").status()),
            api::kErrAuthFailed.message);
  internal::Request auth;
  auth.mutable_authenticate()->set_name("alice");
  auth.mutable_authenticate()->set_simple_token_prefix("abcdefghijklmnop");
  auth.mutable_authenticate()->set_checked_revision(store_->revision());
  std::string token;
  ASSERT_TRUE(store_->Apply(auth, 77, &token).ok());
  EXPECT_EQ(token, "abcdefghijklmnop.77");
  auto info = store_->InfoFromToken(token);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->user, "alice");
  internal::Request del_alice;
  del_alice.mutable_auth_user_delete()->set_name("alice");
  Ok(del_alice);
  EXPECT_EQ(Msg(store_->InfoFromToken(token).status()),
            api::kErrInvalidAuthToken.message);
}

TEST_F(AuthStoreTest, SerializeAndLoadKeepEverything) {
  SetUpUsers();
  Ok(Perm("r", Permission::READ, "a", "b"));
  const std::string blob = store_->Serialize();
  auto tp = MakeTokenProvider("simple", std::chrono::seconds(300), {});
  AuthStore other(std::move(tp).value());
  ASSERT_TRUE(other.Load(blob).ok());
  EXPECT_TRUE(other.enabled());
  EXPECT_EQ(other.revision(), store_->revision());
  EXPECT_TRUE(other.IsRangePermitted(Alice(), "a", "").ok());
  EXPECT_FALSE(other.IsRangePermitted(Alice(), "b", "").ok());
  EXPECT_TRUE(other.CheckPassword("alice", "pw-alice").ok());
  EXPECT_FALSE(other.Load("not a proto \xff\xff").ok());
}

}  // namespace
}  // namespace keel::server

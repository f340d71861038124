// JWT token provider (--auth-token jwt,...): the TokenProvider face of
// JwtTokenProvider (auth_jwt.h), which does the options, keys and tokens.
#include <utility>

#include "common/log.h"
#include "server/auth_jwt.h"
#include "server/auth_token.h"

namespace keel::server {
namespace {

// etcd's tokenJWT: stateless, so Enable/Disable/InvalidateUser do nothing
// (a token stays valid until it expires; an auth revision bump makes it old).
class JwtProvider final : public TokenProvider {
 public:
  explicit JwtProvider(std::unique_ptr<JwtTokenProvider> jwt)
      : jwt_(std::move(jwt)) {}

  std::string_view Kind() const override { return "jwt"; }
  Result<std::string> GenTokenPrefix() override { return std::string(); }

  Result<std::string> Assign(const std::string& user, uint64_t auth_revision,
                             const AssignContext&) override {
    auto token = jwt_->Assign(user, auth_revision);
    if (!token.ok()) {
      KEEL_LOG_DEBUG("failed to sign a JWT token", log::F("user-name", user),
                     log::F("revision", auth_revision),
                     log::F("error", token.status().message()));
    }
    return token;
  }

  Result<TokenInfo> Info(std::string_view token, uint64_t) override {
    auto info = jwt_->Info(token);
    if (!info.ok()) {
      KEEL_LOG_WARN("failed to parse a JWT token",
                    log::F("error", info.status().message()));
      return Status::InvalidArgument(kInvalidAuthToken);
    }
    return TokenInfo{std::move(info->username), info->revision};
  }

  void Enable() override {}
  void Disable() override {}
  void InvalidateUser(const std::string&) override {}

 private:
  const std::unique_ptr<JwtTokenProvider> jwt_;
};

}  // namespace

Result<std::unique_ptr<TokenProvider>> MakeJwtTokenProvider(
    const TokenOptions& options) {
  auto jwt = JwtTokenProvider::Make(options.params);
  if (!jwt.ok()) return jwt.status();
  KEEL_LOG_INFO("JWT token provider ready",
                log::F("sign-method", (*jwt)->sign_method()),
                log::F("ttl", (*jwt)->ttl()),
                log::F("verify-only", (*jwt)->verify_only()));
  return std::unique_ptr<TokenProvider>(new JwtProvider(std::move(*jwt)));
}

}  // namespace keel::server

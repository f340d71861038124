// --auth-token parsing and the simple token provider (etcd's tokenSimple).
#include "server/auth_token.h"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <mutex>
#include <unordered_map>

namespace keel::server {
namespace {

constexpr std::string_view kLetters =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr size_t kSimpleTokenLength = 16;

Status InvalidOpts() { return Status::InvalidArgument(kInvalidAuthOpts); }

// etcd's simple tokens: "<16 random letters>.<raft index>", known to every
// member (each applies the Authenticate entry), forgotten after `ttl`
// without use. Expiry is checked when a token is used and swept when a new
// one is assigned, so no thread is needed.
class SimpleTokenProvider final : public TokenProvider {
 public:
  SimpleTokenProvider(std::chrono::seconds ttl, TokenProviderDeps deps)
      : ttl_(ttl), deps_(std::move(deps)) {}

  std::string_view Kind() const override { return "simple"; }

  Result<std::string> GenTokenPrefix() override {
    std::string out;
    out.reserve(kSimpleTokenLength);
    // Rejection sampling keeps each letter equally likely (52 * 4 = 208).
    while (out.size() < kSimpleTokenLength) {
      unsigned char buf[32];
      if (RAND_bytes(buf, sizeof(buf)) != 1) {
        return Status::IOError("auth: no random bytes for a token");
      }
      for (unsigned char b : buf) {
        if (b >= 208 || out.size() == kSimpleTokenLength) continue;
        out.push_back(kLetters[b % kLetters.size()]);
      }
    }
    return out;
  }

  Result<std::string> Assign(const std::string& user, uint64_t,
                             const AssignContext& ctx) override {
    std::string token =
        ctx.simple_token_prefix + "." + std::to_string(ctx.index);
    const auto now = Clock::now();
    std::lock_guard l(mu_);
    if (now - last_sweep_ > std::chrono::seconds(1)) {
      std::erase_if(tokens_,
                    [&](const auto& kv) { return kv.second.expiry < now; });
      last_sweep_ = now;
    }
    // The index makes a token unique even if two prefixes collided.
    tokens_[token] = Entry{user, now + ttl_};
    return token;
  }

  Result<TokenInfo> Info(std::string_view token,
                         uint64_t current_revision) override {
    const size_t dot = token.find('.');
    if (dot == std::string_view::npos ||
        token.find('.', dot + 1) != std::string_view::npos) {
      return Status::InvalidArgument(kInvalidAuthToken);
    }
    uint64_t index = 0;
    const char* b = token.data() + dot + 1;
    const char* e = token.data() + token.size();
    auto [p, ec] = std::from_chars(b, e, index);
    if (ec != std::errc() || p != e || b == e) {
      return Status::InvalidArgument(kInvalidAuthToken);
    }
    const std::string key(token);
    if (!Lookup(key, current_revision).ok() && deps_.wait_applied) {
      // Made by an Authenticate entry this member may not have applied yet.
      deps_.wait_applied(index, Clock::now() + std::chrono::milliseconds(2000));
    }
    return Lookup(key, current_revision);
  }

  void Enable() override {}
  void Disable() override {
    std::lock_guard l(mu_);
    tokens_.clear();
  }
  void InvalidateUser(const std::string& user) override {
    std::lock_guard l(mu_);
    std::erase_if(tokens_,
                  [&](const auto& kv) { return kv.second.user == user; });
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string user;
    Clock::time_point expiry;
  };

  Result<TokenInfo> Lookup(const std::string& token, uint64_t revision) {
    const auto now = Clock::now();
    std::lock_guard l(mu_);
    auto it = tokens_.find(token);
    if (it == tokens_.end()) {
      return Status::InvalidArgument(kInvalidAuthToken);
    }
    if (it->second.expiry < now) {
      tokens_.erase(it);
      return Status::InvalidArgument(kInvalidAuthToken);
    }
    it->second.expiry = now + ttl_;  // etcd refreshes a token on use
    return TokenInfo{it->second.user, revision};
  }

  const std::chrono::seconds ttl_;
  const TokenProviderDeps deps_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> tokens_;  // guarded by mu_
  Clock::time_point last_sweep_{};                 // guarded by mu_
};

}  // namespace

Result<TokenOptions> ParseTokenOptions(const std::string& spec,
                                       std::chrono::seconds simple_ttl) {
  TokenOptions o;
  o.simple_ttl = simple_ttl;
  size_t start = 0;
  bool first = true;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    std::string part = spec.substr(start, comma - start);
    start = comma + 1;
    if (first) {
      o.kind = part;
      first = false;
      continue;
    }
    const size_t eq = part.find('=');
    if (eq == std::string::npos) return InvalidOpts();
    std::string k = part.substr(0, eq);
    if (o.params.count(k)) return InvalidOpts();
    o.params[k] = part.substr(eq + 1);
  }
  if (o.kind != "simple" && o.kind != "jwt") return InvalidOpts();
  return o;
}

Result<std::unique_ptr<TokenProvider>> MakeTokenProvider(
    const std::string& spec, std::chrono::seconds simple_ttl,
    const TokenProviderDeps& deps) {
  auto o = ParseTokenOptions(spec, simple_ttl);
  if (!o.ok()) return o.status();
  if (o->kind == "jwt") return MakeJwtTokenProvider(*o);
  return std::unique_ptr<TokenProvider>(
      std::make_unique<SimpleTokenProvider>(simple_ttl, deps));
}

}  // namespace keel::server

// JWT token provider (--auth-token jwt,...): placeholder until engineer
// `jwt` replaces this file with the implementation of MakeJwtTokenProvider
// (contract in auth_token.h). Until then a member refuses to start with
// --auth-token jwt, naming why, rather than serving without it.
#include "server/auth_token.h"

namespace keel::server {

Result<std::unique_ptr<TokenProvider>> MakeJwtTokenProvider(
    const TokenOptions&) {
  return Status::InvalidArgument("auth: jwt tokens are not built yet");
}

}  // namespace keel::server

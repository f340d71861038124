// jwt_tool: signs or verifies one token with keel's JWT module, so that the
// e2e suite can check tokens between etcd and keel both ways.
//
//   jwt_tool sign   <opts> <user> <revision>   prints the token
//   jwt_tool verify <opts> <token>             prints "<user> <revision>"
//
// <opts> are --auth-token's options after "jwt,", e.g.
// "sign-method=RS256,pub-key=a.pub". Exit status 1 on any failure, with the
// reason on stderr.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "server/auth_jwt.h"

namespace {

std::map<std::string, std::string> SplitOptions(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string kv = s.substr(start, end - start);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using keel::server::JwtTokenProvider;
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (!((cmd == "sign" && argc == 5) || (cmd == "verify" && argc == 4))) {
    std::fprintf(stderr,
                 "usage: jwt_tool sign <opts> <user> <revision>\n"
                 "       jwt_tool verify <opts> <token>\n");
    return 2;
  }
  auto p = JwtTokenProvider::Make(SplitOptions(argv[2]));
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", p.status().message().c_str());
    return 1;
  }
  if (cmd == "sign") {
    auto t = (*p)->Assign(argv[3], std::strtoull(argv[4], nullptr, 10));
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", t.status().message().c_str());
      return 1;
    }
    std::printf("%s\n", t->c_str());
    return 0;
  }
  auto info = (*p)->Info(argv[3]);
  if (!info.ok()) {
    std::fprintf(stderr, "invalid token: %s\n",
                 info.status().message().c_str());
    return 1;
  }
  std::printf("%s %llu\n", info->username.c_str(),
              static_cast<unsigned long long>(info->revision));
  return 0;
}

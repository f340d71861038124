#include "cmd/keel_member.h"

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "keelpb/keel.grpc.pb.h"

namespace keel::cmd {

namespace {

bool ParseHexIds(const std::vector<std::string>& in,
                 google::protobuf::RepeatedField<uint64_t>* out) {
  for (const auto& s : in) {
    try {
      size_t used = 0;
      out->Add(std::stoull(s, &used, 16));
      if (used != s.size()) return false;
    } catch (...) {
      return false;
    }
  }
  return true;
}

}  // namespace

int MemberMain(int argc, char** argv) {
  CLI::App app{
      "keel member replace: replace several voting members at once through "
      "joint consensus.\n"
      "  step 1: keel member replace --endpoint E --add URLS [--add URLS]\n"
      "          (adds learners; start them with --initial-cluster-state "
      "existing)\n"
      "  step 2: keel member replace --endpoint E --promote ID... --remove "
      "ID...",
      "keel member"};
  std::string endpoint = "127.0.0.1:2379";
  std::vector<std::string> add, promote, remove;
  int timeout_s = 30;
  auto* replace = app.add_subcommand("replace", "replace members");
  replace->add_option("--endpoint", endpoint, "a member's client address");
  replace->add_option("--add", add,
                      "peer URLs (comma-separated) of a new member");
  replace->add_option("--promote", promote, "hex id of a learner to promote");
  replace->add_option("--remove", remove, "hex id of a voter to remove");
  replace->add_option("--timeout", timeout_s, "seconds");
  app.require_subcommand(1);
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  keelpb::MemberReplaceRequest req;
  for (const auto& a : add) req.add_add_peer_urls(a);
  if (!ParseHexIds(promote, req.mutable_promote_ids()) ||
      !ParseHexIds(remove, req.mutable_remove_ids())) {
    std::fprintf(stderr, "Error: member ids are hexadecimal\n");
    return 1;
  }
  auto ep = endpoint;
  if (auto p = ep.find("://"); p != std::string::npos) ep = ep.substr(p + 3);
  auto stub = keelpb::Membership::NewStub(
      grpc::CreateChannel(ep, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(timeout_s));
  keelpb::MemberReplaceResponse resp;
  grpc::Status st = stub->MemberReplace(&ctx, req, &resp);
  if (!st.ok()) {
    std::fprintf(stderr, "Error: %s\n", st.error_message().c_str());
    return 1;
  }
  for (uint64_t id : resp.added_ids()) {
    std::printf("Member %016llx added as a learner\n",
                static_cast<unsigned long long>(id));
  }
  if (resp.added_ids_size() == 0) std::printf("Members replaced\n");
  for (const auto& m : resp.members()) {
    std::printf("%016llx, %s, %s, %s\n",
                static_cast<unsigned long long>(m.id()), m.name().c_str(),
                m.peerurls_size() ? m.peerurls(0).c_str() : "",
                m.islearner() ? "learner" : "voter");
  }
  return 0;
}

}  // namespace keel::cmd

// From etcd's TLS flags to the TLS settings of the peer transport and the
// client listener: auto TLS (self-signed certificates generated in
// <data-dir>/fixtures/{peer,client}, as etcd does) and --cipher-suites.
//
// Thread safety: functions of their arguments (they may write the fixtures).
#pragma once

#include "common/status.h"
#include "server/config.h"
#include "transport/tls_options.h"

namespace keel::server {

// side: config.security.peer or .client; dir_name: "peer" or "client";
// hosts_from: that side's listen URLs (the certificate names their hosts).
Result<transport::TlsOptions> MakeTlsOptions(
    const ServerConfig& config, const TlsSide& side, const char* dir_name,
    const std::vector<Url>& hosts_from);

}  // namespace keel::server

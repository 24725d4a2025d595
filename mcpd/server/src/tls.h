// The HTTPS listener's TLS: 1.2 minimum (1.3 preferred by OpenSSL's
// negotiation), forward-secret AEAD suites only for 1.2. Certificate and
// key from files, from systemd credentials, or on a first run with none a
// self-signed pair generated into the data directory.
#pragma once

#include <string>

#include <boost/asio/ssl/context.hpp>

#include "status.h"

namespace sluice::mcpd {

struct TlsFiles {
  std::string cert;
  std::string key;
  bool generated = false;
  std::string fingerprint;  // SHA-256 of the certificate (DER), colon-separated hex
};

// Uses cert/key when both are given; else $CREDENTIALS_DIRECTORY/tls.crt
// and tls.key when present; else <dir>/tls/cert.pem and key.pem, generated
// (EC P-256, one year, SAN localhost/127.0.0.1/::1) when absent.
Result<TlsFiles> locate_tls(const std::string& cert, const std::string& key, const std::string& dir);

Result<std::string> certificate_fingerprint(const std::string& cert_path);

Status configure_tls(boost::asio::ssl::context& ctx, const TlsFiles& files);

}  // namespace sluice::mcpd

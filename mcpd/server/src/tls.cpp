#include "tls.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <functional>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace sluice::mcpd {
namespace {

bool exists(const std::string& p) { return ::access(p.c_str(), R_OK) == 0; }

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

Status write_pem(const std::string& path, mode_t mode, const std::function<int(FILE*)>& writer) {
  const std::string tmp = path + ".tmp";
  // A leftover of a crash (or anything planted) is removed, never reused:
  // made anew, never through a link, with exactly `mode`.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return fail("cannot create " + tmp);
  if (::fchmod(fd, mode) != 0) {
    ::close(fd);
    return fail("cannot set the mode of " + tmp);
  }
  FILE* f = ::fdopen(fd, "w");
  if (!f) {
    ::close(fd);
    return fail("cannot open " + tmp);
  }
  const bool ok = writer(f) == 1 && std::fflush(f) == 0 && ::fsync(fd) == 0;
  std::fclose(f);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot write " + path);
  return {};
}

Status generate(const std::string& cert_path, const std::string& key_path) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return fail("cannot generate a TLS key");
  X509Ptr cert(X509_new());
  if (!cert) return fail("cannot allocate a certificate");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return fail("no randomness for the serial");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("sluice-mcpd"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"},
                            std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            std::pair{NID_ext_key_usage, "serverAuth"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (!ext) return fail("cannot build a certificate extension");
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return fail("cannot sign the certificate");
  if (auto s = write_pem(key_path, 0600, [&](FILE* f) {
        return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
      });
      !s) {
    return s;
  }
  return write_pem(cert_path, 0644, [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
}

}  // namespace

Result<std::string> certificate_fingerprint(const std::string& cert_path) {
  FILE* f = std::fopen(cert_path.c_str(), "r");
  if (!f) return fail("cannot read " + cert_path);
  X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!cert) return fail(cert_path + " holds no PEM certificate");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  X509_digest(cert.get(), EVP_sha256(), md, &len);
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    if (i) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Result<TlsFiles> locate_tls(const std::string& cert, const std::string& key, const std::string& dir) {
  TlsFiles files;
  if (!cert.empty() || !key.empty()) {
    if (cert.empty() || key.empty()) return fail("tls: give both cert_file and key_file, or neither");
    files.cert = cert;
    files.key = key;
  } else if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
             creds && exists(std::string(creds) + "/tls.crt") && exists(std::string(creds) + "/tls.key")) {
    files.cert = std::string(creds) + "/tls.crt";
    files.key = std::string(creds) + "/tls.key";
  } else {
    const std::string tls_dir = dir + "/tls";
    if (::mkdir(tls_dir.c_str(), 0700) != 0 && errno != EEXIST) return fail("cannot create " + tls_dir);
    files.cert = tls_dir + "/cert.pem";
    files.key = tls_dir + "/key.pem";
    if (!exists(files.cert) || !exists(files.key)) {
      // A private key is about to be written here: the directory must be
      // this process's user's alone (0700), whoever made it.
      struct stat st {};
      if (::lstat(tls_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
          (st.st_mode & 077) != 0) {
        return fail(tls_dir + " must be a directory of sluice-mcpd's user with mode 0700");
      }
      if (auto s = generate(files.cert, files.key); !s) return tl::unexpected(s.error());
      files.generated = true;
    }
  }
  // A key others may read is a key others may have: refused, not served.
  // (Group-readable is common, root:ssl-cert 0640, and allowed.)
  struct stat key_st {};
  if (::stat(files.key.c_str(), &key_st) != 0) return fail("tls: cannot read " + files.key);
  if ((key_st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return fail("tls: " + files.key + " is readable or writable by any user (chmod o-rwx it)");
  }
  auto fp = certificate_fingerprint(files.cert);
  if (!fp) return tl::unexpected(fp.error());
  files.fingerprint = *fp;
  return files;
}

Status configure_tls(boost::asio::ssl::context& ctx, const TlsFiles& files) {
  SSL_CTX* raw = ctx.native_handle();
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // No session tickets: their key would live as long as the process, and
  // a TLS 1.2 session resumed from a ticket has no forward secrecy against
  // whoever later reads it. Clients here keep their connections alive.
  SSL_CTX_set_options(raw, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(raw, 0);
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  // TLS 1.2: ECDHE with AEAD only. (1.3 suites are all AEAD already.)
  if (SSL_CTX_set_cipher_list(raw, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) return fail("tls: cipher list");
  // Elliptic-curve key exchange only: no finite-field (ffdhe) group a
  // client could pick for a slower, weaker handshake.
  if (SSL_CTX_set1_groups_list(raw, "X25519:P-256:P-384") != 1) return fail("tls: key exchange groups");
  if (SSL_CTX_use_certificate_chain_file(raw, files.cert.c_str()) != 1) {
    return fail("tls: cannot load the certificate " + files.cert);
  }
  if (SSL_CTX_use_PrivateKey_file(raw, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("tls: cannot load the key " + files.key);
  }
  if (SSL_CTX_check_private_key(raw) != 1) return fail("tls: the key does not match the certificate");
  return {};
}

}  // namespace sluice::mcpd

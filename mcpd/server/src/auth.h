// Authentication, lockout and rate limits: everything decided about a
// request before its body is looked at.
//
// Credential types plug in behind Authenticator: API keys today; OAuth
// access tokens (their own issue) become a second implementation, tried
// by the same chain, producing the same Principal.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "identity.h"
#include "store.h"

namespace sluice::mcpd {

enum class AuthFailure {
  missing,    // no credential presented
  malformed,  // not shaped like any credential type
  unknown,    // no such credential, or the secret does not match
  expired,
  revoked,
  disabled,   // the user is disabled
  changing,   // its user is being changed: refused until the key cache has the change (retry)
};
std::string_view to_string(AuthFailure f);

struct AuthOutcome {
  std::optional<Principal> principal;
  AuthFailure failure = AuthFailure::missing;
  std::string credential_id;  // when one could be read (for the audit record)
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Whether this authenticator recognises the bearer token's shape.
  [[nodiscard]] virtual bool claims(std::string_view token) const = 0;
  [[nodiscard]] virtual AuthOutcome authenticate(std::string_view token) const = 0;
  // A credential this authenticator admitted, as it stands now: why it is
  // no longer valid (revoked, expired, its user disabled), or else its
  // user's role. For work that runs after admission (a body that took its
  // time, a request queued on another thread), which must not act on a
  // revocation that overtook it, nor with a role since lowered.
  [[nodiscard]] virtual std::variant<AuthFailure, Role> current(std::string_view credential_id) const = 0;
};

// API keys, served from memory; reload() after any change to keys, users
// or tenants (the admin paths call it).
class ApiKeyAuthenticator final : public Authenticator {
 public:
  explicit ApiKeyAuthenticator(Store& store) : store_(store) {}
  // Re-reads every key. Serialised: an older snapshot never replaces a
  // newer one.
  Status reload();
  // Forgets a key at once (revocation does not wait for a reload). After
  // any reload in progress: one that read the store before the key was
  // revoked cannot bring it back (callers drop after the store change).
  void drop(const std::string& id);
  // Every key of the user refused (`changing`) until the next reload,
  // which must read the store after the user's change; the ids refused.
  // A changing key is no failed credential: its client is told to retry,
  // with nothing counted against its address or audited.
  std::vector<std::string> hold_user(std::int64_t user_id);
  // Whether some user's keys are refused as changing (a reload is due).
  [[nodiscard]] bool changing() const;
  [[nodiscard]] bool claims(std::string_view token) const override;
  [[nodiscard]] AuthOutcome authenticate(std::string_view token) const override;
  // Read under one lock; a key not cached is revoked.
  [[nodiscard]] std::variant<AuthFailure, Role> current(std::string_view credential_id) const override;

 private:
  // Why the key can no longer be used, or nullopt. Under mu_.
  std::optional<AuthFailure> unusable(const KeyRecord& k) const;
  Store& store_;
  std::mutex reload_mu_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, KeyRecord> keys_;
  std::unordered_set<std::int64_t> changing_;  // users, until the next reload
};

// Tries each authenticator that claims the token, in order.
AuthOutcome authenticate(const std::vector<const Authenticator*>& chain,
                         std::string_view authorization_header);

using Clock = std::chrono::steady_clock;

// Too many failed authentications from one client address within `window`
// lock that address out until the window has passed since the last
// failure, even for a valid credential.
class Lockout {
 public:
  struct Options {
    unsigned max_failures = 10;
    std::chrono::seconds window{300};
    std::size_t max_tracked = 100000;  // addresses remembered; oldest forgotten first
  };
  explicit Lockout(Options o) : o_(o) {}

  // Seconds until the address may try again; 0 when not locked.
  [[nodiscard]] std::int64_t locked_for(const std::string& addr, Clock::time_point now) const;
  // Records a failure; returns true when this failure locks the address.
  bool failure(const std::string& addr, Clock::time_point now);
  [[nodiscard]] std::size_t tracked() const;

 private:
  // A sliding window, estimated from two fixed ones: the failures of the
  // current window plus those of the previous one weighted by how much of
  // it the sliding window still covers. A few bytes per address whatever
  // max_failures is (a list of timestamps would cost max_failures x 8
  // bytes for each of max_tracked addresses), and no burst across a
  // window's edge passes.
  struct Entry {
    unsigned current = 0;   // failures since window_start
    unsigned previous = 0;  // in the window before it
    Clock::time_point window_start{};
    Clock::time_point locked_until{};
    std::list<std::string>::iterator lru;
  };
  Options o_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recent first
};

// Token buckets per key (a tenant): `rate` tokens per second, up to `burst`.
class RateLimiter {
 public:
  RateLimiter(double rate, double burst) : rate_(rate), burst_(burst) {}
  // 0 when allowed (a token is taken); else seconds to wait (>= 1).
  std::int64_t take(const std::string& key, Clock::time_point now);

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  double rate_, burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace sluice::mcpd

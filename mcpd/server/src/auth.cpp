#include "auth.h"

#include <algorithm>
#include <cmath>

#include "keys.h"

namespace sluice::mcpd {

std::string_view to_string(AuthFailure f) {
  switch (f) {
    case AuthFailure::missing: return "missing";
    case AuthFailure::malformed: return "malformed";
    case AuthFailure::unknown: return "unknown";
    case AuthFailure::expired: return "expired";
    case AuthFailure::revoked: return "revoked";
    case AuthFailure::disabled: return "disabled";
    case AuthFailure::changing: return "changing";
  }
  return "unknown";
}

Status ApiKeyAuthenticator::reload() {
  std::lock_guard serial(reload_mu_);
  auto keys = store_.keys();
  if (!keys) return tl::unexpected(keys.error());
  std::unordered_map<std::string, KeyRecord> fresh;
  for (KeyRecord& k : *keys) fresh.emplace(k.id, std::move(k));
  std::unique_lock lock(mu_);
  keys_.swap(fresh);
  changing_.clear();  // read after every change hold_user announced (both under reload_mu_)
  return {};
}

void ApiKeyAuthenticator::drop(const std::string& id) {
  std::lock_guard serial(reload_mu_);
  std::unique_lock lock(mu_);
  keys_.erase(id);
}

std::vector<std::string> ApiKeyAuthenticator::hold_user(std::int64_t user_id) {
  std::lock_guard serial(reload_mu_);
  std::unique_lock lock(mu_);
  changing_.insert(user_id);
  std::vector<std::string> ids;
  for (const auto& [id, k] : keys_) {
    if (k.user.id == user_id) ids.push_back(id);
  }
  return ids;
}

bool ApiKeyAuthenticator::changing() const {
  std::shared_lock lock(mu_);
  return !changing_.empty();
}

bool ApiKeyAuthenticator::claims(std::string_view token) const { return token.starts_with("slk_"); }

AuthOutcome ApiKeyAuthenticator::authenticate(std::string_view token) const {
  AuthOutcome out;
  auto parsed = parse_key(token);
  if (!parsed) {
    out.failure = AuthFailure::malformed;
    return out;
  }
  out.credential_id = parsed->id;
  // Hash before the lookup so an unknown id costs what a known one does.
  const KeyHash presented = hash_secret(parsed->secret);
  std::shared_lock lock(mu_);
  auto it = keys_.find(parsed->id);
  if (it == keys_.end() || !same_hash(presented, it->second.hash)) {
    out.failure = AuthFailure::unknown;
    return out;
  }
  const KeyRecord& k = it->second;
  if (const auto why = unusable(k)) {
    out.failure = *why;
    return out;
  }
  Principal p;
  p.credential_type = kApiKeyCredential;
  p.credential_id = k.id;
  p.tenant_id = k.user.tenant_id;
  p.tenant = k.tenant;
  p.user_id = k.user.id;
  p.user = k.user.name;
  p.role = k.user.role;
  p.scopes = k.scopes;
  p.expires_ms = k.expires_ms;
  out.principal = std::move(p);
  return out;
}

std::variant<AuthFailure, Role> ApiKeyAuthenticator::current(std::string_view credential_id) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(std::string(credential_id));
  if (it == keys_.end()) return AuthFailure::revoked;
  if (const auto why = unusable(it->second)) return *why;
  return it->second.user.role;
}

std::optional<AuthFailure> ApiKeyAuthenticator::unusable(const KeyRecord& k) const {
  if (k.revoked_ms) return AuthFailure::revoked;
  if (changing_.contains(k.user.id)) return AuthFailure::changing;
  if (k.expires_ms && *k.expires_ms <= now_ms()) return AuthFailure::expired;
  if (k.user.disabled) return AuthFailure::disabled;
  return std::nullopt;
}

AuthOutcome authenticate(const std::vector<const Authenticator*>& chain,
                         std::string_view header) {
  AuthOutcome none;
  if (header.empty()) return none;  // missing
  // RFC 6750: the scheme is case-insensitive, one space, then the token.
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), header.begin(),
                  [](char a, char b) { return a == (b | 0x20); })) {
    none.failure = AuthFailure::malformed;
    return none;
  }
  std::string_view token = header.substr(kScheme.size());
  for (const Authenticator* a : chain) {
    if (a->claims(token)) return a->authenticate(token);
  }
  none.failure = AuthFailure::malformed;
  return none;
}

std::int64_t Lockout::locked_for(const std::string& addr, Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(addr);
  if (it == entries_.end() || it->second.locked_until <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.locked_until - now);
  return std::max<std::int64_t>(1, left.count());
}

bool Lockout::failure(const std::string& addr, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(addr);
  if (it == entries_.end()) {
    if (entries_.size() >= o_.max_tracked && !lru_.empty()) {
      // Forget the address seen least recently. An attacker spraying
      // addresses can push out a locked one only after max_tracked others.
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(addr);
    it = entries_.emplace(addr, Entry{0, 0, now, {}, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  if (now - e.window_start >= 2 * o_.window) {
    e.previous = e.current = 0;  // both windows are over
    e.window_start = now;
  } else if (now - e.window_start >= o_.window) {
    e.previous = e.current;
    e.current = 0;
    e.window_start += o_.window;
  }
  if (e.current < o_.max_failures) ++e.current;
  const double covered = 1.0 - std::chrono::duration<double>(now - e.window_start) / o_.window;
  if (e.current + e.previous * covered >= o_.max_failures) {
    const bool newly = e.locked_until <= now;
    e.locked_until = now + o_.window;
    return newly;
  }
  return false;
}

std::size_t Lockout::tracked() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::int64_t RateLimiter::take(const std::string& key, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!fresh) {
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1.0 - b.tokens) / rate_)));
}

}  // namespace sluice::mcpd

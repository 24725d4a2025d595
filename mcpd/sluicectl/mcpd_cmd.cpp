// sluicectl bootstrap | tenant ... | user ... | key ... | audit verify: sluice-mcpd's local
// administration (its admin socket, one JSON line each way) and an
// offline check of its audit chain.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>

#include "audit_chain.h"
#include "cli.h"

namespace sluice::ctl {
namespace {

struct McpdOptions {
  std::string socket = "/run/sluice-mcpd/mcpd-admin.sock";
  std::string tenant, user = "admin", data_source, scopes = "read,query", name = "key", key_id, role = "viewer";
  std::int64_t user_id = 0, tenant_id = 0;
  std::string db = "/var/lib/sluice/mcpd.db";
  std::string anchors;
  bool no_anchors = false;
  std::string policy_file;
  std::string args_json;
  std::string args_file;
  std::int64_t seq = 0;
  bool json_out = false;
  bool disable = false, enable = false;
};

// The anchor file an audit check uses: --anchors, else the one beside the
// database. Fail closed: without anchors a log cut short (or rewritten
// after a record) verifies, so a missing anchor file (deleted, or never
// made) is an error unless the caller says, with --no-anchors, that the
// chain alone is what they want ("" then). Nullopt, said why, on error.
std::optional<std::string> anchors_for(const McpdOptions& o) {
  if (o.no_anchors) return std::string();
  if (!o.anchors.empty()) return o.anchors;
  std::string anchors = sluice::mcpd::anchors_beside(o.db);
  if (::access(anchors.c_str(), F_OK) != 0) {
    std::cerr << "sluicectl: no anchor file at " << anchors
              << ": records cut off the end of the log would not show; give --anchors FILE, or "
                 "--no-anchors to check the chain alone\n";
    return std::nullopt;
  }
  return anchors;
}

// A reply (a key list on an appliance with many keys) is read up to this.
constexpr std::size_t kMaxReply = 64 * 1024 * 1024;

// One request line, one reply line, within 30 s (a policy push waits for
// sluice-agent to apply both kernel layers).
std::optional<nlohmann::json> admin_call(const std::string& path, const nlohmann::json& request) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd < 0 || path.size() >= sizeof addr.sun_path) {
    std::cerr << "sluicectl: bad admin socket path\n";
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::cerr << "sluicectl: cannot reach sluice-mcpd at " << path << ": " << std::strerror(errno) << "\n";
    ::close(fd);
    return std::nullopt;
  }
  const std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    std::cerr << "sluicectl: cannot send to sluice-mcpd\n";
    ::close(fd);
    return std::nullopt;
  }
  std::string reply;
  char buf[4096];
  while (reply.size() < kMaxReply) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
    // Only the bytes just read are searched: a long reply costs linear time.
    if (std::memchr(buf, '\n', static_cast<std::size_t>(n))) break;
  }
  ::close(fd);
  auto doc = nlohmann::json::parse(reply, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    std::cerr << "sluicectl: no valid reply from sluice-mcpd\n";
    return std::nullopt;
  }
  return doc;
}

int print(const std::optional<nlohmann::json>& reply) {
  if (!reply) return kExitFailure;
  std::cout << reply->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
  // A token that could not be written (a full disk behind a redirect) is
  // a key nobody holds: not a success.
  if (!std::cout) return kExitFailure;
  auto ok = reply->find("ok");
  return ok != reply->end() && *ok == true ? kExitOk : kExitFailure;
}

}  // namespace

void add_mcpd_commands(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<McpdOptions>();

  auto* boot = app.add_subcommand("bootstrap", "create the first tenant and its super-admin key (once)");
  boot->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  boot->add_option("--tenant", o->tenant, "tenant name")->required();
  boot->add_option("--user", o->user, "super-admin user name");
  boot->add_option("--data-source", o->data_source, "the tenant's SQLite file (absolute path)")->required();
  boot->callback([o, &exit_code] {
    exit_code = print(admin_call(o->socket, {{"op", "bootstrap"}, {"tenant", o->tenant}, {"user", o->user},
                                             {"data_source", o->data_source}}));
  });

  auto* tenant = app.add_subcommand("tenant", "tenants (over the admin socket)");
  tenant->require_subcommand(1);
  auto* tcreate = tenant->add_subcommand("create", "create a tenant on its own SQLite file");
  tcreate->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  tcreate->add_option("--name", o->tenant, "tenant name")->required();
  tcreate->add_option("--data-source", o->data_source,
                      "the tenant's SQLite file (absolute path; no other tenant's file)")->required();
  tcreate->callback([o, &exit_code] {
    exit_code = print(admin_call(o->socket, {{"op", "create_tenant"}, {"tenant", o->tenant},
                                             {"data_source", o->data_source}}));
  });
  auto* tlist = tenant->add_subcommand("list", "list tenants (id, name, data source)");
  tlist->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  tlist->callback([o, &exit_code] { exit_code = print(admin_call(o->socket, {{"op", "list_tenants"}})); });

  auto* key = app.add_subcommand("key", "API keys (over the admin socket)");
  key->require_subcommand(1);
  auto* create = key->add_subcommand("create", "issue a key for a user; the token is printed once");
  create->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  create->add_option("--user-id", o->user_id, "user id")->required();
  create->add_option("--name", o->name, "key name");
  create->add_option("--scopes", o->scopes, "of read,query,flows,admin (admin: the admin API)");
  create->callback([o, &exit_code] {
    exit_code = print(admin_call(o->socket, {{"op", "create_key"}, {"user_id", o->user_id}, {"name", o->name},
                                             {"scopes", o->scopes}}));
  });
  auto* revoke = key->add_subcommand("revoke", "revoke a key by id");
  revoke->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  revoke->add_option("id", o->key_id, "key id")->required();
  revoke->callback([o, &exit_code] { exit_code = print(admin_call(o->socket, {{"op", "revoke_key"}, {"key_id", o->key_id}})); });
  auto* list = key->add_subcommand("list", "list keys (ids, never secrets)");
  list->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  list->callback([o, &exit_code] { exit_code = print(admin_call(o->socket, {{"op", "list_keys"}})); });

  auto* user = app.add_subcommand("user", "users (over the admin socket)");
  user->require_subcommand(1);
  auto* ucreate = user->add_subcommand("create", "create a user in a tenant");
  ucreate->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  ucreate->add_option("--tenant-id", o->tenant_id, "tenant id")->required();
  ucreate->add_option("--name", o->user, "user name")->required();
  ucreate->add_option("--role", o->role, "viewer, editor, admin or super_admin");
  ucreate->callback([o, &exit_code] {
    exit_code = print(admin_call(o->socket, {{"op", "create_user"}, {"tenant_id", o->tenant_id}, {"user", o->user},
                                             {"role", o->role}}));
  });
  auto* uupdate = user->add_subcommand(
      "update", "give a user another role, or disable or enable them (their keys are refused while disabled)");
  uupdate->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  uupdate->add_option("--user-id", o->user_id, "user id")->required();
  auto* urole = uupdate->add_option("--role", o->role, "viewer, editor, admin or super_admin");
  auto* udisable = uupdate->add_flag("--disable", o->disable, "refuse every key of the user, end their sessions");
  auto* uenable = uupdate->add_flag("--enable", o->enable, "accept the user's live keys again");
  udisable->excludes(uenable);
  uupdate->callback([o, urole, udisable, uenable, &exit_code] {
    nlohmann::json req = {{"op", "update_user"}, {"user_id", o->user_id}};
    if (urole->count() > 0) req["role"] = o->role;
    if (udisable->count() > 0) req["disabled"] = true;
    if (uenable->count() > 0) req["disabled"] = false;
    if (req.size() == 2) {
      std::fprintf(stderr, "sluicectl: user update: give --role, --disable or --enable\n");
      exit_code = kExitInvalid;
      return;
    }
    exit_code = print(admin_call(o->socket, req));
  });
  auto* ulist = user->add_subcommand("list", "every user of every tenant: id, tenant, name, role, disabled");
  ulist->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  ulist->callback([o, &exit_code] { exit_code = print(admin_call(o->socket, {{"op", "list_users"}})); });

  auto* tp = app.add_subcommand("tenant-policy", "a tenant's egress policy in sluice-mcpd (over the admin socket)");
  tp->require_subcommand(1);
  auto* tpset = tp->add_subcommand(
      "set", "store a new version and push it to sluice-agent; exit 0 only once the kernel enforces it");
  tpset->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  tpset->add_option("--tenant", o->tenant, "tenant name")->required();
  tpset->add_option("FILE", o->policy_file, "policy JSON, - for stdin")->required();
  tpset->callback([o, &exit_code] {
    auto text = read_input(o->policy_file, 2 * 1024 * 1024);
    if (!text) {
      exit_code = kExitInvalid;
      return;
    }
    exit_code = print(admin_call(o->socket, {{"op", "put_policy"}, {"tenant", o->tenant}, {"policy", *text}}));
  });
  auto* tpshow = tp->add_subcommand("show", "the stored version and what each layer enforces");
  tpshow->add_option("--socket", o->socket, "sluice-mcpd's admin socket");
  tpshow->add_option("--tenant", o->tenant, "tenant name")->required();
  tpshow->callback([o, &exit_code] {
    exit_code = print(admin_call(o->socket, {{"op", "get_policy"}, {"tenant", o->tenant}}));
  });

  auto* audit = app.add_subcommand("audit", "the audit log");
  audit->require_subcommand(1);
  auto* verify = audit->add_subcommand("verify", "check the hash chain of every record (read-only)");
  verify->add_option("--db", o->db, "sluice-mcpd's database");
  auto* anchors_opt = verify->add_option(
      "--anchors", o->anchors, "the anchor file of chain heads (default: audit.anchors beside the database)");
  verify->add_flag("--no-anchors", o->no_anchors,
                   "check the chain alone, without an anchor file (records cut off its end would not show)")
      ->excludes(anchors_opt);
  verify->add_flag("--json", o->json_out, "print the verdict as JSON");
  verify->callback([o, &exit_code] {
    const auto found = anchors_for(*o);
    if (!found) {
      exit_code = kExitInvalid;
      return;
    }
    const std::string& anchors = *found;
    auto v = sluice::mcpd::verify_audit(o->db, anchors);
    if (!v) {
      std::cerr << "sluicectl: " << v.error().what << "\n";
      exit_code = kExitInvalid;
      return;
    }
    if (o->json_out) {
      std::cout << nlohmann::json{{"ok", v->ok},           {"records", v->records},
                                  {"bad_seq", v->bad_seq}, {"problem", v->problem},
                                  {"head_hash", v->head_hash}, {"anchors", v->anchors},
                                  {"last_anchored_seq", v->last_anchored}, {"anchors_file", anchors}}
                       .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    } else if (v->ok) {
      std::cout << "audit chain intact: " << v->records << " records, head " << v->head_hash;
      if (anchors.empty()) {
        std::cout << "; anchors NOT checked (--no-anchors): records cut off the end would not show";
      } else {
        std::cout << "; " << v->anchors << " anchors in " << anchors << " match";
        if (v->records > v->last_anchored) {
          // What no anchor covers yet: normal for a running mcpd (its last
          // interval), or after an unclean stop. Records appended while mcpd
          // was stopped look the same to a chain: the journal's copy tells.
          std::cout << "; " << (v->records - v->last_anchored) << " records after the last anchor (seq "
                    << v->last_anchored + 1 << "-" << v->records << ") are covered by no anchor yet";
        }
      }
      std::cout << "\n";
    } else {
      std::cout << "audit chain BROKEN at seq " << v->bad_seq << ": " << v->problem << " (" << v->records
                << " records verified before it)\n";
    }
    exit_code = v->ok ? kExitOk : kExitFailure;
  });

  auto* anchor = audit->add_subcommand(
      "anchor", "seed an anchor file that holds no anchor with the head of an intact log (sluice-mcpd stopped)");
  anchor->add_option("--db", o->db, "sluice-mcpd's database");
  anchor->add_option("--anchors", o->anchors, "the anchor file (default: audit.anchors beside the database)");
  anchor->callback([o, &exit_code] {
    const std::string anchors = o->anchors.empty() ? sluice::mcpd::anchors_beside(o->db) : o->anchors;
    auto seeded = sluice::mcpd::seed_anchors(o->db, anchors);
    if (!seeded) {
      std::cerr << "sluicectl: " << seeded.error().what << "\n";
      exit_code = kExitFailure;
      return;
    }
    std::cout << "anchored seq " << seeded->seq << " in " << anchors
              << " (the whole chain verified first); make the file append-only: chattr +a " << anchors << "\n";
    exit_code = kExitOk;
  });

  auto* digest = audit->add_subcommand(
      "digest",
      "whether a tool call's record was made with these arguments (needs the deployment's digest key; "
      "the chain is verified first): exit 0 if so, 1 if not or if the chain is broken");
  digest->add_option("--db", o->db, "sluice-mcpd's database (the key is audit-digest.key beside it)");
  digest->add_option("--seq", o->seq, "the record's seq (from sluicectl audit, /api/audit or the journal)")
      ->required()
      ->check(CLI::PositiveNumber);
  // On the command line the arguments are readable by every local user
  // (/proc/PID/cmdline) for as long as the chain takes to verify.
  auto* digest_args = digest->add_option(
      "--args", o->args_json, "the tool call's arguments, a JSON object (visible to other local users: prefer --args-file)");
  digest->add_option("--args-file", o->args_file, "a file holding the arguments' JSON object, or - for standard input")
      ->excludes(digest_args);
  auto* digest_anchors = digest->add_option(
      "--anchors", o->anchors, "the anchor file of chain heads (default: audit.anchors beside the database)");
  digest->add_flag("--no-anchors", o->no_anchors, "check the chain alone, without an anchor file")
      ->excludes(digest_anchors);
  digest->callback([o, &exit_code] {
    if (o->args_file.empty() == o->args_json.empty()) {
      std::cerr << "sluicectl: give the arguments with --args-file (or --args)\n";
      exit_code = kExitInvalid;
      return;
    }
    if (!o->args_file.empty()) {
      auto text = read_input(o->args_file, 8 * 1024 * 1024);
      if (!text) {
        exit_code = kExitInvalid;
        return;
      }
      o->args_json = std::move(*text);
    }
    auto args = nlohmann::json::parse(o->args_json, nullptr, false);
    if (args.is_discarded() || !args.is_object()) {
      std::cerr << "sluicectl: --args must be a JSON object\n";
      exit_code = kExitInvalid;
      return;
    }
    auto digest_key = sluice::mcpd::load_digest_key(sluice::mcpd::digest_key_beside(o->db), /*create=*/false);
    if (!digest_key) {
      std::cerr << "sluicectl: " << digest_key.error().what << "\n";
      exit_code = kExitInvalid;
      return;
    }
    // A digest proves nothing in a record that was edited, or copied from
    // another (nonce and all) and the chain rewritten after it: the chain
    // is checked first, whole, against the anchors as `audit verify` does.
    const auto anchors = anchors_for(*o);
    if (!anchors) {
      exit_code = kExitInvalid;
      return;
    }
    auto chain = sluice::mcpd::verify_audit(o->db, *anchors);
    if (!chain) {
      std::cerr << "sluicectl: " << chain.error().what << "\n";
      exit_code = kExitInvalid;
      return;
    }
    if (!chain->ok) {
      std::cout << "the audit chain is broken at seq " << chain->bad_seq << " (" << chain->problem
                << "): no record of it is vouched for\n";
      exit_code = kExitFailure;
      return;
    }
    auto record = sluice::mcpd::read_audit_record(o->db, o->seq);
    if (!record) {
      std::cerr << "sluicectl: " << record.error().what << "\n";
      exit_code = kExitInvalid;
      return;
    }
    const auto hmac = record->find("args_hmac");
    const auto nonce = record->find("args_nonce");
    if (hmac == record->end() || !hmac->is_string() || (nonce != record->end() && !nonce->is_string())) {
      std::cerr << "sluicectl: audit record " << o->seq << " carries no arguments digest\n";
      exit_code = kExitInvalid;
      return;
    }
    // Records written before nonces (2026-12-07) digest the arguments alone.
    const std::string n = nonce == record->end() ? std::string() : nonce->get<std::string>();
    const auto field = [&](const char* name) {
      const auto it = record->find(name);
      return it != record->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string rec_tenant = field("tenant"), rec_credential = field("credential"), rec_tool = field("tool");
    const std::string want =
        sluice::mcpd::digest_arguments(*digest_key, n, {rec_tenant, rec_credential, rec_tool}, args);
    // (Both digests are the operator's to see: nothing to time.)
    const bool same = want == hmac->get_ref<const std::string&>();
    std::cout << "audit record " << o->seq << (same ? ": made with these arguments" : ": not made with these arguments")
              << "\n";
    exit_code = same ? kExitOk : kExitFailure;
  });
}

}  // namespace sluice::ctl

#include "demo_data.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include <sqlite3.h>

namespace sluice::mcpd {
namespace {

using Kind = DataError::Kind;
using std::string_view;

// splitmix64: tiny, fast, and the same sequence on every platform, which
// is what "deterministic from the seed" needs (std:: distributions are not
// specified bit for bit).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // [0, n); the modulo bias is irrelevant for demo data.
  std::int64_t below(std::int64_t n) { return static_cast<std::int64_t>(next() % std::uint64_t(n)); }
  bool percent(int p) { return below(100) < p; }
  template <class T, std::size_t N>
  const T& pick(const std::array<T, N>& a) { return a[static_cast<std::size_t>(below(N))]; }

 private:
  std::uint64_t s_;
};

constexpr auto kFirstNames = std::to_array<string_view>({
    "Ada", "Alan", "Bea", "Carl", "Dora", "Emil", "Fay", "Gus", "Hedy", "Ivo", "Jun", "Kai",
    "Lea", "Milo", "Nina", "Otto", "Pia", "Quin", "Rosa", "Sven", "Tea", "Uma", "Vito", "Wen"});
constexpr auto kLastNames = std::to_array<string_view>({
    "Example", "Sample", "Placeholder", "Testman", "Demo", "Fakely", "Mockford", "Stubbs",
    "Dummy", "Specimen", "Prototype", "Pretend", "Fixture", "Synthia", "Madeup", "Notreal"});
struct Place {
  string_view city, country;
};
constexpr auto kPlaces = std::to_array<Place>({
    {"Lisbon", "PT"}, {"Porto", "PT"}, {"Madrid", "ES"}, {"Lyon", "FR"}, {"Paris", "FR"},
    {"Berlin", "DE"}, {"Hamburg", "DE"}, {"Milan", "IT"}, {"Vienna", "AT"}, {"Zurich", "CH"},
    {"Dublin", "IE"}, {"London", "GB"}, {"Leeds", "GB"}, {"Warsaw", "PL"}, {"Oslo", "NO"},
    {"Tallinn", "EE"}});
constexpr auto kDomains =
    std::to_array<string_view>({"example.com", "example.org", "example.net"});
constexpr auto kSegments = std::to_array<string_view>({"retail", "retail", "retail", "premium",
                                                        "business", "student"});
constexpr auto kCurrencies = std::to_array<string_view>({"EUR", "EUR", "EUR", "GBP", "CHF",
                                                          "USD"});
constexpr auto kNetworks = std::to_array<string_view>({"visa", "mastercard", "examplecard"});
struct Merchant {
  string_view name, category;
};
constexpr auto kMerchants = std::to_array<Merchant>({
    {"Acme Grocery", "groceries"},        {"Globex Fuel", "transport"},
    {"Initech Software", "software"},     {"Umbrella Pharmacy", "health"},
    {"Contoso Coffee", "restaurants"},    {"Fabrikam Furniture", "home"},
    {"Northwind Traders", "groceries"},   {"Vandelay Imports", "shopping"},
    {"Bluth Bananas", "groceries"},       {"Wonka Sweets", "shopping"},
    {"Tyrell Travel", "travel"},          {"Hooli Mobile", "utilities"},
    {"Duff Brewery", "restaurants"},      {"Soylent Foods", "groceries"},
    {"Pied Piper Cloud", "software"},     {"Dunder Paper", "office"},
    {"Cyberdyne Robotics", "electronics"}, {"Stark Electronics", "electronics"},
    {"Monorail Transit", "transport"},    {"Kwik Mart", "groceries"}});

enum class AccountKind : std::uint8_t { checking, savings, loan };
constexpr std::array<string_view, 3> kAccountKinds = {"checking", "savings", "loan"};

struct Account {
  AccountKind kind;
  std::uint8_t currency;  // index into kCurrencies
};

// Days since 1970-01-01 <-> civil date (H. Hinnant's algorithms).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  int y;
  unsigned m, d;
};
Civil civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(yoe + era * 400 + (m <= 2)), m, d};
}

std::string date_text(std::int64_t days) {
  const Civil c = civil_from_days(days);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", c.y, c.m, c.d);
  return buf;
}

std::string timestamp_text(std::int64_t seconds) {
  const Civil c = civil_from_days(seconds / 86400);
  const std::int64_t s = seconds % 86400;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d:%02d", c.y, c.m, c.d,
                static_cast<int>(s / 3600), static_cast<int>(s / 60 % 60), static_cast<int>(s % 60));
  return buf;
}

tl::unexpected<DataError> failed(sqlite3* db, string_view what) {
  return data_error(Kind::internal, "could not generate the demo data",
                    std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

DataResult<void> exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return failed(db, sql);
  return {};
}

// One prepared INSERT, bound column by column and stepped once per row.
class Insert {
 public:
  Insert(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Insert() { sqlite3_finalize(stmt_); }
  Insert(const Insert&) = delete;
  Insert& operator=(const Insert&) = delete;

  [[nodiscard]] bool ok() const { return stmt_ != nullptr; }
  Insert& i64(int col, std::int64_t v) { return check(sqlite3_bind_int64(stmt_, col, v)); }
  Insert& text(int col, string_view v) {
    return check(sqlite3_bind_text64(stmt_, col, v.data(), v.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8));
  }
  Insert& null(int col) { return check(sqlite3_bind_null(stmt_, col)); }
  // Inserts the bound row.
  [[nodiscard]] DataResult<void> row() {
    if (bind_rc_ != SQLITE_OK || sqlite3_step(stmt_) != SQLITE_DONE) return failed(db_, "insert");
    sqlite3_reset(stmt_);
    return {};
  }

 private:
  Insert& check(int rc) {
    if (rc != SQLITE_OK) bind_rc_ = rc;
    return *this;
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int bind_rc_ = SQLITE_OK;
};

static constexpr char kSchemaSql[] =
    "CREATE TABLE customers(id INTEGER PRIMARY KEY, full_name TEXT NOT NULL, email TEXT, "
    "city TEXT, country TEXT, segment TEXT, created_at TEXT);"
    "CREATE TABLE accounts(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES "
    "customers, iban TEXT, kind TEXT, currency TEXT, balance_cents INTEGER, opened_at TEXT);"
    "CREATE TABLE cards(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES "
    "accounts, pan_last4 TEXT, network TEXT, status TEXT, expires TEXT);"
    "CREATE TABLE transactions(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES "
    "accounts, ts TEXT, amount_cents INTEGER, currency TEXT, merchant TEXT, category TEXT, "
    "channel TEXT);";
// After the bulk load: building an index once is far cheaper than
// maintaining it row by row.
static constexpr char kIndexSql[] =
    "CREATE INDEX accounts_customer ON accounts(customer_id);"
    "CREATE INDEX cards_account ON cards(account_id);"
    "CREATE INDEX transactions_account_ts ON transactions(account_id, ts);";
static constexpr char kInsertCustomerSql[] =
    "INSERT INTO customers(id,full_name,email,city,country,segment,created_at) "
    "VALUES (?,?,?,?,?,?,?)";
static constexpr char kInsertAccountSql[] =
    "INSERT INTO accounts(id,customer_id,iban,kind,currency,balance_cents,opened_at) "
    "VALUES (?,?,?,?,?,?,?)";
static constexpr char kInsertCardSql[] =
    "INSERT INTO cards(id,account_id,pan_last4,network,status,expires) VALUES (?,?,?,?,?,?)";
static constexpr char kInsertTransactionSql[] =
    "INSERT INTO transactions(id,account_id,ts,amount_cents,currency,merchant,category,channel) "
    "VALUES (?,?,?,?,?,?,?,?)";

// Independent streams per table: the customers of a seed stay the same
// whatever the number of transactions asked for.
constexpr std::uint64_t kCustomerStream = 0x636f7374;
constexpr std::uint64_t kAccountStream = 0x61636374;
constexpr std::uint64_t kTransactionStream = 0x74786e73;

const std::int64_t kFirstCustomerDay = days_from_civil(2012, 1, 1);
const std::int64_t kLastCustomerDay = days_from_civil(2022, 12, 31);
const std::int64_t kFirstTransactionSecond = days_from_civil(2023, 1, 1) * 86400;
const std::int64_t kTransactionSpanSeconds = 2 * 365 * 86400;

std::string lower(string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

// Returns each customer's created_at day, indexed by id - 1.
DataResult<std::vector<std::int64_t>> fill_customers(sqlite3* db, const DemoOptions& o) {
  Insert ins(db, kInsertCustomerSql);
  if (!ins.ok()) return failed(db, "prepare customers");
  Rng rng(o.seed ^ kCustomerStream);
  std::vector<std::int64_t> created;
  created.reserve(static_cast<std::size_t>(o.customers));
  for (std::int64_t id = 1; id <= o.customers; ++id) {
    const string_view first = rng.pick(kFirstNames);
    const string_view last = rng.pick(kLastNames);
    const Place& place = rng.pick(kPlaces);
    const std::int64_t day = kFirstCustomerDay + rng.below(kLastCustomerDay - kFirstCustomerDay);
    created.push_back(day);
    ins.i64(1, id).text(2, std::string(first) + " " + std::string(last));
    if (rng.percent(7)) {
      ins.null(3);  // some customers gave no e-mail: describe() shows it
    } else {
      ins.text(3, lower(first) + "." + lower(last) + std::to_string(id) + "@" +
                      std::string(rng.pick(kDomains)));
    }
    if (rng.percent(2)) {
      ins.null(4);
    } else {
      ins.text(4, place.city);
    }
    ins.text(5, place.country).text(6, rng.pick(kSegments)).text(7, date_text(day));
    if (auto r = ins.row(); !r) return tl::unexpected(r.error());
  }
  return created;
}

std::string fake_iban(std::int64_t account_id, Rng& rng) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "XX%02dSLCE%014lld", static_cast<int>(rng.below(100)),
                static_cast<long long>(account_id * 7919 % 100000000000000LL));
  return buf;
}

DataResult<void> add_card(Insert& ins, std::int64_t id, std::int64_t account_id, Rng& rng) {
  char last4[8];
  std::snprintf(last4, sizeof last4, "%04d", static_cast<int>(rng.below(10000)));
  const int roll = static_cast<int>(rng.below(100));
  const string_view status = roll < 85 ? "active" : roll < 90 ? "blocked" : "expired";
  const std::int64_t expires_day = days_from_civil(2024, 1, 1) + rng.below(5 * 365);
  ins.i64(1, id).i64(2, account_id).text(3, last4).text(4, rng.pick(kNetworks)).text(5, status);
  return ins.text(6, date_text(expires_day).substr(0, 7)).row();  // YYYY-MM
}

DataResult<std::vector<Account>> fill_accounts(sqlite3* db, const DemoOptions& o,
                                               const std::vector<std::int64_t>& created,
                                               DemoStats& stats) {
  Insert acc(db, kInsertAccountSql);
  Insert card(db, kInsertCardSql);
  if (!acc.ok() || !card.ok()) return failed(db, "prepare accounts");
  Rng rng(o.seed ^ kAccountStream);
  std::vector<Account> accounts;
  for (std::int64_t customer = 1; customer <= o.customers; ++customer) {
    const int n = 1 + (rng.percent(45) ? 1 : 0) + (rng.percent(15) ? 1 : 0);
    for (int k = 0; k < n; ++k) {
      const std::int64_t id = static_cast<std::int64_t>(accounts.size()) + 1;
      const AccountKind kind = k == 0            ? AccountKind::checking
                               : rng.percent(70) ? AccountKind::savings
                                                 : AccountKind::loan;
      const auto currency = static_cast<std::uint8_t>(rng.below(kCurrencies.size()));
      const std::int64_t balance = kind == AccountKind::loan ? -rng.below(25'000'000)
                                                             : rng.below(5'000'000);
      const std::int64_t opened = created[static_cast<std::size_t>(customer - 1)] + rng.below(900);
      accounts.push_back(Account{kind, currency});
      acc.i64(1, id).i64(2, customer).text(3, fake_iban(id, rng));
      acc.text(4, kAccountKinds[static_cast<std::size_t>(kind)]).text(5, kCurrencies[currency]);
      if (auto r = acc.i64(6, balance).text(7, date_text(opened)).row(); !r) {
        return tl::unexpected(r.error());
      }
      if (kind != AccountKind::checking) continue;
      for (int c = rng.percent(20) ? 2 : 1; c > 0; --c) {
        if (auto r = add_card(card, ++stats.cards, id, rng); !r) return tl::unexpected(r.error());
      }
    }
  }
  stats.accounts = static_cast<std::int64_t>(accounts.size());
  return accounts;
}

DataResult<void> fill_transactions(sqlite3* db, const DemoOptions& o,
                                   const std::vector<Account>& accounts) {
  Insert ins(db, kInsertTransactionSql);
  if (!ins.ok()) return failed(db, "prepare transactions");
  Rng rng(o.seed ^ kTransactionStream);
  const auto n_accounts = static_cast<std::int64_t>(accounts.size());
  for (std::int64_t id = 1; id <= o.transactions; ++id) {
    const std::int64_t account = 1 + rng.below(n_accounts);
    const Account& a = accounts[static_cast<std::size_t>(account - 1)];
    const std::int64_t ts = kFirstTransactionSecond + rng.below(kTransactionSpanSeconds);
    ins.i64(1, id).i64(2, account).text(3, timestamp_text(ts)).text(5, kCurrencies[a.currency]);
    const int roll = static_cast<int>(rng.below(100));
    if (a.kind != AccountKind::checking || roll < 8) {
      // Transfers: salary in, savings deposits, loan repayments.
      const bool in = a.kind == AccountKind::checking || rng.percent(60);
      ins.i64(4, in ? 50'000 + rng.below(600'000) : -(5'000 + rng.below(200'000)));
      ins.text(6, in ? "Payroll Example Ltd" : "Standing order").text(7, "transfer");
      ins.text(8, "transfer");
    } else if (roll < 14) {
      ins.i64(4, -2'000 * (1 + rng.below(20))).null(6).text(7, "cash").text(8, "atm");
    } else {
      const Merchant& m = rng.pick(kMerchants);
      ins.i64(4, -(100 + rng.below(30'000))).text(6, m.name).text(7, m.category);
      ins.text(8, rng.percent(30) ? "online" : "card");
    }
    if (auto r = ins.row(); !r) return r;
  }
  return {};
}

// Fills the (empty) database of `db`; the caller has it in a transaction.
DataResult<DemoStats> fill(sqlite3* db, const DemoOptions& o) {
  DemoStats stats;
  auto created = fill_customers(db, o);
  if (!created) return tl::unexpected(created.error());
  stats.customers = o.customers;
  auto accounts = fill_accounts(db, o, *created, stats);
  if (!accounts) return tl::unexpected(accounts.error());
  if (auto r = fill_transactions(db, o, *accounts); !r) return tl::unexpected(r.error());
  stats.transactions = o.transactions;
  return stats;
}

// Builds the whole database in `tmp`. Fast because nothing is journaled or
// synced while building (a crash leaves only the .tmp file, which the next
// run replaces); the result is a normal rollback-journal database.
DataResult<DemoStats> build(const std::string& tmp, const DemoOptions& o) {
  sqlite3* db = nullptr;
  const std::string name = tmp.starts_with('/') ? tmp : "./" + tmp;  // never a URI
  const int rc = sqlite3_open_v2(name.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  const std::unique_ptr<sqlite3, decltype(&sqlite3_close)> guard(db, &sqlite3_close);
  if (rc != SQLITE_OK) return failed(db, "open");
  for (const char* sql :
       {"PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", "PRAGMA locking_mode=EXCLUSIVE",
        "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-65536", kSchemaSql, "BEGIN"}) {
    if (auto r = exec(db, sql); !r) return tl::unexpected(r.error());
  }
  auto stats = fill(db, o);
  if (!stats) return stats;
  for (const char* sql : {kIndexSql, "COMMIT", "PRAGMA journal_mode=DELETE",
                          "PRAGMA analysis_limit=1000", "ANALYZE"}) {
    if (auto r = exec(db, sql); !r) return tl::unexpected(r.error());
  }
  return stats;
}

DataResult<void> sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return data_error(Kind::internal, "could not write the demo data",
                      "fsync " + path + ": " + std::strerror(err));
  }
  ::close(fd);
  return {};
}

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

DataResult<DemoStats> generate_demo_bank(const std::string& path, const DemoOptions& o) {
  if (o.customers < 1 || o.transactions < 0) {
    return data_error(Kind::internal, "invalid demo options: customers must be at least 1 "
                                      "and transactions at least 0");
  }
  if (o.customers > kMaxDemoCustomers || o.transactions > kMaxDemoTransactions) {
    return data_error(Kind::too_large, "demo options exceed the maximum size");
  }
  struct stat st {};
  if (path.empty()) return data_error(Kind::internal, "no output file given");
  if (::lstat(path.c_str(), &st) == 0) {
    return data_error(Kind::denied, "the output file already exists",
                      "refusing to overwrite " + path);
  }
  if (errno != ENOENT) {
    return data_error(Kind::internal, "the output file cannot be created",
                      "lstat " + path + ": " + std::strerror(errno));
  }
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // a stale build of ours; ENOENT is the common case
  auto stats = build(tmp, o);
  // From here on, `tmp` must not outlive a failure.
  auto done = [&](DataResult<DemoStats> r) {
    ::unlink(tmp.c_str());
    return r;
  };
  if (!stats) return done(std::move(stats));
  if (auto r = sync_path(tmp, O_RDONLY); !r) return done(tl::unexpected(r.error()));
  // link() never replaces: a file that appeared at `path` meanwhile wins.
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    return done(data_error(err == EEXIST ? Kind::denied : Kind::internal,
                           err == EEXIST ? "the output file already exists"
                                         : "could not write the demo data",
                           "link " + path + ": " + std::strerror(err)));
  }
  if (auto r = sync_path(parent_dir(path), O_RDONLY | O_DIRECTORY); !r) {
    return done(tl::unexpected(r.error()));
  }
  return done(std::move(stats));
}

}  // namespace sluice::mcpd

// Shared fixtures of the data layer tests: a temporary directory removed
// with its contents whatever happens, a small demo bank inside one, and a
// fingerprint of a file to prove it was not modified.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "demo_data.h"
#include "temp_dir.h"
#include "sqlite_source.h"

namespace sluice::mcpd::testing {

using sluice::testing::TempDir;

inline DemoOptions small_bank() {
  DemoOptions o;
  o.customers = 200;
  o.transactions = 2000;
  o.seed = 7;
  return o;
}

// A small demo bank in its own temporary directory.
struct DemoBank {
  TempDir dir;
  std::string path = dir.file("bank.db");
  DemoStats stats;

  explicit DemoBank(const DemoOptions& o = small_bank()) {
    auto s = generate_demo_bank(path, o);
    REQUIRE(s);
    stats = *s;
  }
  [[nodiscard]] std::unique_ptr<SqliteSource> open(const QueryLimits& limits = {}) const {
    auto src = SqliteSource::open(path, limits);
    REQUIRE(src);
    return std::move(*src);
  }
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Fingerprint {
  std::int64_t size = -1;
  std::int64_t mtime_ns = -1;
  std::string content;

  static Fingerprint of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return Fingerprint{static_cast<std::int64_t>(st.st_size),
                       std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec,
                       read_file(path)};
  }
  bool operator==(const Fingerprint&) const = default;
};

// Runs a query that must succeed.
inline QueryResult must_query(const SqliteSource& src, std::string_view sql,
                              const std::vector<nlohmann::json>& params = {}) {
  auto r = src.query(sql, params);
  INFO(sql << " -> " << (r ? "" : r.error().message + " / " + r.error().detail));
  REQUIRE(r);
  return std::move(*r);
}

}  // namespace sluice::mcpd::testing

// A power cut, as SQLite's files would see it. While a PowerCut is alive
// it is SQLite's default VFS: every database, journal and WAL file opened
// without naming a VFS goes through it to the real one (the unix VFS), and
// it keeps, per file, what a disk would still hold after losing power: the
// contents as of the file's last completed sync. Writes and truncations
// since then are only pending. cut() returns the files as they would come
// back; with `torn`, an arbitrary subset of the pending writes is kept as
// well (a disk may have written some of them), which the log must survive
// too. fail_syncs() makes syncs fail as a disk's I/O error would. A file
// created since its last sync (its directory entry never
// synced; SQLite syncs a new journal's directory on its first sync) comes
// back only if its first sync completed.
//
// What it proves: whatever mcpd acknowledged before the cut was synced,
// because a write that no sync covered is not in what cut() returns.
// What it cannot: that the disk honours fsync (the host's job), and the
// effect of deleting a file without syncing its directory (deletions count
// as durable at once, the harsher choice for SQLite's WAL reset).
#pragma once

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <sqlite3.h>

namespace sluice::testing {

class PowerCut {
 public:
  // `before`: run once first (e.g. to let another VFS capture the real
  // default VFS before this one stands in for it).
  explicit PowerCut(const std::function<void()>& before = {}) {
    if (before) before();
    real_ = sqlite3_vfs_find(nullptr);
    REQUIRE(real_ != nullptr);
    REQUIRE(instance_ == nullptr);
    instance_ = this;
    vfs_ = *real_;
    vfs_.zName = "sluice-power-cut";
    vfs_.pNext = nullptr;
    vfs_.szOsFile = static_cast<int>(real_offset() + static_cast<std::size_t>(real_->szOsFile));
    vfs_.xOpen = &PowerCut::open;
    vfs_.xDelete = &PowerCut::remove;
    REQUIRE(sqlite3_vfs_register(&vfs_, /*makeDflt=*/1) == SQLITE_OK);
  }
  // Every connection opened through it must be closed first.
  ~PowerCut() {
    sqlite3_vfs_unregister(&vfs_);
    instance_ = nullptr;
  }
  PowerCut(const PowerCut&) = delete;
  PowerCut& operator=(const PowerCut&) = delete;

  // Runs `f` atomically with respect to the files: a cut sees all of what
  // happened before it or none.
  template <class F>
  auto locked(F&& f) {
    std::lock_guard lock(mu_);
    return f();
  }

  // The files (full path -> contents) as they would be after the power
  // went now; `also`, run in the same instant, records what had been
  // acknowledged by then.
  std::map<std::string, std::string> cut(bool torn, std::uint32_t seed, const std::function<void()>& also = {}) {
    std::lock_guard lock(mu_);
    if (also) also();
    std::mt19937 rng(seed);
    std::map<std::string, std::string> files;
    for (const auto& [path, f] : files_) {
      const bool some_pending = !f.pending.empty();
      bool exists = f.durable;
      if (!exists && !(torn && some_pending && (rng() & 1))) continue;
      std::string image = f.image;
      if (torn) {
        for (const auto& op : f.pending) {
          if (rng() & 1) apply(image, op);
        }
      }
      files.emplace(path, std::move(image));
    }
    return files;
  }

  // Writes a cut's files into `dir` under their own names.
  static void restore(const std::map<std::string, std::string>& files, const std::string& dir) {
    for (const auto& [path, image] : files) {
      const auto slash = path.rfind('/');
      std::ofstream out(dir + "/" + path.substr(slash == std::string::npos ? 0 : slash + 1), std::ios::binary);
      out.write(image.data(), static_cast<std::streamsize>(image.size()));
      REQUIRE(out.good());
    }
  }

  // The next `n` syncs of a kept file fail (SQLITE_IOERR_FSYNC), as a disk
  // reporting an I/O error would make them, and lose what they were to
  // cover: Linux may drop the pages of a failed fsync (later syncs do not
  // write them again) while reads still see them. `after`: that many
  // syncs complete first (a change stored before its record is written).
  void fail_syncs(int n, int after = 0) {
    std::lock_guard lock(mu_);
    fail_syncs_ = n;
    pass_syncs_ = after;
  }

  [[nodiscard]] std::uint64_t syncs() const {
    std::lock_guard lock(mu_);
    return syncs_;
  }

 private:
  struct Op {
    bool truncate = false;
    sqlite3_int64 offset = 0;  // truncate: the new size
    std::string data;
  };
  struct Tracked {
    bool durable = false;  // exists after a cut
    std::string image;     // contents as of the last sync
    std::vector<Op> pending;
  };
  struct File {
    sqlite3_file base;  // first: SQLite sees a File as its sqlite3_file
    std::string* path;  // null for files nobody keeps (temporary ones)
    sqlite3_file* real;
  };

  static std::size_t real_offset() { return (sizeof(File) + 15) / 16 * 16; }
  static sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

  static void apply(std::string& image, const Op& op) {
    if (op.truncate) {
      image.resize(static_cast<std::size_t>(op.offset));
      return;
    }
    const auto end = static_cast<std::size_t>(op.offset) + op.data.size();
    if (image.size() < end) image.resize(end);
    std::memcpy(image.data() + op.offset, op.data.data(), op.data.size());
  }

  static std::string read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static int open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
    PowerCut& self = *instance_;
    auto* f = reinterpret_cast<File*>(file);
    f->base.pMethods = nullptr;
    f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + real_offset());
    f->path = nullptr;
    const bool keep = name != nullptr && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL)) != 0;
    std::lock_guard lock(self.mu_);
    if (keep && !self.files_.count(name)) {
      struct stat st {};
      Tracked t;
      if (::stat(name, &st) == 0) {  // there before: as durable as it is
        t.durable = true;
        t.image = read_whole(name);
      }
      self.files_.emplace(name, std::move(t));
    }
    const int rc = self.real_->xOpen(self.real_, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) return rc;  // SQLite does not close a file that failed to open
    if (keep) f->path = new std::string(name);
    f->base.pMethods = &kMethods;
    return SQLITE_OK;
  }

  static int remove(sqlite3_vfs*, const char* name, int sync_dir) {
    PowerCut& self = *instance_;
    std::lock_guard lock(self.mu_);
    const int rc = self.real_->xDelete(self.real_, name, sync_dir);
    if (rc == SQLITE_OK) self.files_.erase(name);
    return rc;
  }

  static int close(sqlite3_file* file) {
    auto* f = reinterpret_cast<File*>(file);
    const int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    delete f->path;
    f->path = nullptr;
    return rc;
  }

  static int write(sqlite3_file* file, const void* data, int n, sqlite3_int64 offset) {
    auto* f = reinterpret_cast<File*>(file);
    PowerCut& self = *instance_;
    std::lock_guard lock(self.mu_);
    const int rc = f->real->pMethods->xWrite(f->real, data, n, offset);
    if (rc == SQLITE_OK && f->path) {
      self.files_[*f->path].pending.push_back(
          Op{false, offset, std::string(static_cast<const char*>(data), static_cast<std::size_t>(n))});
    }
    return rc;
  }

  static int truncate(sqlite3_file* file, sqlite3_int64 size) {
    auto* f = reinterpret_cast<File*>(file);
    PowerCut& self = *instance_;
    std::lock_guard lock(self.mu_);
    const int rc = f->real->pMethods->xTruncate(f->real, size);
    if (rc == SQLITE_OK && f->path) self.files_[*f->path].pending.push_back(Op{true, size, {}});
    return rc;
  }

  static int sync(sqlite3_file* file, int flags) {
    auto* f = reinterpret_cast<File*>(file);
    PowerCut& self = *instance_;
    std::lock_guard lock(self.mu_);
    if (f->path && self.fail_syncs_ > 0 && self.pass_syncs_ > 0) {
      --self.pass_syncs_;
    } else if (f->path && self.fail_syncs_ > 0) {
      --self.fail_syncs_;
      self.files_[*f->path].pending.clear();
      return SQLITE_IOERR_FSYNC;
    }
    const int rc = f->real->pMethods->xSync(f->real, flags);
    if (rc == SQLITE_OK && f->path) {
      // fsync covers the file, whichever descriptor wrote to it.
      auto& t = self.files_[*f->path];
      for (const auto& op : t.pending) apply(t.image, op);
      t.pending.clear();
      t.durable = true;
      ++self.syncs_;
    }
    return rc;
  }

  static constexpr sqlite3_io_methods kMethods = {
      2,
      &PowerCut::close,
      [](sqlite3_file* f, void* p, int n, sqlite3_int64 o) { return real(f)->pMethods->xRead(real(f), p, n, o); },
      &PowerCut::write,
      &PowerCut::truncate,
      &PowerCut::sync,
      [](sqlite3_file* f, sqlite3_int64* size) { return real(f)->pMethods->xFileSize(real(f), size); },
      [](sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); },
      [](sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); },
      [](sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); },
      [](sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); },
      [](sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); },
      [](sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); },
      [](sqlite3_file* f, int region, int size, int extend, void volatile** out) {
        return real(f)->pMethods->xShmMap(real(f), region, size, extend, out);
      },
      [](sqlite3_file* f, int offset, int n, int flags) {
        return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
      },
      [](sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); },
      [](sqlite3_file* f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); },
      nullptr,
      nullptr,
  };

  static inline PowerCut* instance_ = nullptr;
  sqlite3_vfs* real_ = nullptr;
  sqlite3_vfs vfs_{};
  mutable std::mutex mu_;
  std::map<std::string, Tracked> files_;
  std::uint64_t syncs_ = 0;
  int fail_syncs_ = 0;
  int pass_syncs_ = 0;  // before fail_syncs_ begin
};

}  // namespace sluice::testing

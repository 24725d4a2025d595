#include "temp_files.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sluice::mcpd {
namespace {

static_assert(sizeof(std::size_t) >= 8, "offsets and counts assume a 64-bit size_t");

constexpr char kVfsName[] = "sluice-memtemp";
constexpr std::size_t kChunk = 64 * 1024;
constexpr int kTempFlags = SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_TRANSIENT_DB |
                           SQLITE_OPEN_SUBJOURNAL;

thread_local TempBudget* t_budget = nullptr;
std::atomic<std::size_t> g_cap{kTempMemoryCap};
std::atomic<std::size_t> g_used{0};

// A zeroed chunk charged to `budget` and to the process's cap, or nullptr
// (`full` says whether for lack of budget rather than of memory).
unsigned char* take_chunk(TempBudget* budget, bool& full) {
  full = !budget || budget->used + kChunk > budget->limit;
  if (full) {
    if (budget) budget->exceeded = true;
    return nullptr;
  }
  if (g_used.fetch_add(kChunk) + kChunk > g_cap.load()) {
    g_used.fetch_sub(kChunk);
    full = true;
    budget->process_full = true;
    return nullptr;
  }
  auto* chunk = static_cast<unsigned char*>(std::calloc(1, kChunk));  // a hole reads as zeros
  if (!chunk) {
    g_used.fetch_sub(kChunk);
    return nullptr;
  }
  budget->used += kChunk;
  return chunk;
}

void give_back(TempBudget* budget, unsigned char* chunk) {
  explicit_bzero(chunk, kChunk);  // these rows do not linger in the allocator's free lists
  std::free(chunk);
  g_used.fetch_sub(kChunk);
  if (budget) budget->used -= kChunk;
}

// A temporary file's bytes: zeroed chunks, charged to a budget.
class Chunks {
 public:
  explicit Chunks(TempBudget* budget) : budget_(budget) {}
  ~Chunks() {
    for (unsigned char* chunk : chunks_) give_back(budget_, chunk);
  }
  Chunks(const Chunks&) = delete;
  Chunks& operator=(const Chunks&) = delete;

  [[nodiscard]] sqlite3_int64 size() const { return size_; }

  int write(const void* buf, int amount, sqlite3_int64 offset) {
    if (amount < 0 || offset < 0) return SQLITE_IOERR_WRITE;
    const auto end = static_cast<std::size_t>(offset) + static_cast<std::size_t>(amount);
    const std::size_t needed = (end + kChunk - 1) / kChunk;
    while (chunks_.size() < needed) {
      bool full = false;
      unsigned char* chunk = take_chunk(budget_, full);
      if (!chunk) {
        shrink(size_);  // the chunks this write took before it failed
        return full ? SQLITE_FULL : SQLITE_IOERR_NOMEM;
      }
      try {
        chunks_.push_back(chunk);
      } catch (const std::bad_alloc&) {
        give_back(budget_, chunk);
        shrink(size_);
        return SQLITE_IOERR_NOMEM;
      }
    }
    copy(static_cast<std::size_t>(offset), static_cast<std::size_t>(amount),
         [&](unsigned char* at, std::size_t done, std::size_t n) {
           std::memcpy(at, static_cast<const unsigned char*>(buf) + done, n);
         });
    size_ = std::max<sqlite3_int64>(size_, static_cast<sqlite3_int64>(end));
    return SQLITE_OK;
  }

  int read(void* buf, int amount, sqlite3_int64 offset) const {
    if (amount < 0 || offset < 0) return SQLITE_IOERR_READ;
    auto* out = static_cast<unsigned char*>(buf);
    const sqlite3_int64 have = std::clamp<sqlite3_int64>(size_ - offset, 0, amount);
    copy(static_cast<std::size_t>(offset), static_cast<std::size_t>(have),
         [&](unsigned char* at, std::size_t done, std::size_t n) { std::memcpy(out + done, at, n); });
    if (have == amount) return SQLITE_OK;
    // Past the end: zeros, and SQLite must be told.
    std::memset(out + have, 0, static_cast<std::size_t>(amount - have));
    return SQLITE_IOERR_SHORT_READ;
  }

  // Never grows the file (SQLite truncates temporary files only to shrink
  // them); gives back every chunk past the end, and what is cut off reads
  // as zeros if the file grows again.
  void shrink(sqlite3_int64 to) {
    if (to < 0) return;
    size_ = std::min(size_, to);
    const auto at = static_cast<std::size_t>(size_);
    const std::size_t keep = (at + kChunk - 1) / kChunk;
    while (chunks_.size() > keep) {
      give_back(budget_, chunks_.back());
      chunks_.pop_back();
    }
    if (at % kChunk != 0) std::memset(chunks_.back() + at % kChunk, 0, kChunk - at % kChunk);
  }

 private:
  // Calls f(chunk bytes at the position, bytes done so far, bytes here)
  // over [offset, offset + n), which the chunks hold.
  template <class F>
  void copy(std::size_t offset, std::size_t n, F&& f) const {
    std::size_t done = 0;
    while (done < n) {
      const std::size_t at = offset + done;
      const std::size_t here = std::min(n - done, kChunk - at % kChunk);
      f(chunks_[at / kChunk] + at % kChunk, done, here);
      done += here;
    }
  }

  TempBudget* budget_;
  std::vector<unsigned char*> chunks_;
  sqlite3_int64 size_ = 0;
};

struct MemFile {
  sqlite3_file base;  // first: SQLite sees only this
  Chunks* data;
};

Chunks& data_of(sqlite3_file* f) { return *reinterpret_cast<MemFile*>(f)->data; }

const sqlite3_io_methods kMemMethods = {
    1,  // iVersion: no shared memory, no memory mapping
    [](sqlite3_file* f) {
      delete reinterpret_cast<MemFile*>(f)->data;
      return SQLITE_OK;
    },
    [](sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) { return data_of(f).read(buf, amount, offset); },
    [](sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
      return data_of(f).write(buf, amount, offset);
    },
    [](sqlite3_file* f, sqlite3_int64 size) {
      data_of(f).shrink(size);
      return SQLITE_OK;
    },
    [](sqlite3_file*, int) { return SQLITE_OK; },  // xSync: nothing to make durable
    [](sqlite3_file* f, sqlite3_int64* size) {
      *size = data_of(f).size();
      return SQLITE_OK;
    },
    [](sqlite3_file*, int) { return SQLITE_OK; },  // xLock: one connection's alone
    [](sqlite3_file*, int) { return SQLITE_OK; },  // xUnlock
    [](sqlite3_file*, int* reserved) {
      *reserved = 0;
      return SQLITE_OK;
    },
    [](sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; },  // xFileControl
    [](sqlite3_file*) { return 4096; },                           // xSectorSize
    [](sqlite3_file*) { return 0; },                              // xDeviceCharacteristics
    nullptr, nullptr, nullptr, nullptr,                           // shared memory (version 2)
    nullptr, nullptr,                                             // memory mapping (version 3)
};

sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs{};

// The unix VFS's file object starts, as it has since SQLite 3.7:
//   const sqlite3_io_methods* pMethod; sqlite3_vfs* pVfs;
//   unixInodeInfo* pInode; int h;   (h: the descriptor)
// pVfs being the VFS this one passes files to is the check that the layout
// is still that one; -1 for anything else (callers fail closed).
int unix_descriptor(const sqlite3_file* file) {
  struct UnixFilePrefix {
    const sqlite3_io_methods* methods;
    sqlite3_vfs* vfs;
    void* inode;
    int fd;
  };
  if (!g_base || !g_base->zName || std::strncmp(g_base->zName, "unix", 4) != 0 || !file || !file->pMethods ||
      file->pMethods == &kMemMethods || g_base->szOsFile < static_cast<int>(sizeof(UnixFilePrefix))) {
    return -1;
  }
  UnixFilePrefix prefix{};
  std::memcpy(&prefix, file, sizeof prefix);
  return prefix.vfs == g_base ? prefix.fd : -1;
}

// Whether `path` names a file SQLite keeps beside a database: its WAL or
// the WAL's shared-memory index.
bool beside_database(std::string_view path) { return path.ends_with("-wal") || path.ends_with("-shm"); }

// The unix VFS's open(2), for every file SQLite opens in the process
// (memory_temp_vfs installs it):
// - Never blocks, and opens no FIFO, socket or block device. A FIFO a
//   tenant's loader left at its file's path or its journal's would block a
//   plain open(2) for good, and with it a worker every tenant shares: no
//   deadline reaches into it. (Character devices pass: SQLite opens
//   /dev/null to keep descriptors 0-2 taken, /dev/urandom for its seed.)
// - Opens no WAL or WAL index with a second name. SQLite reads a WAL as its
//   database's own pages (it checks only the page size), and takes over an
//   index it believes it alone has open (truncating one another connection
//   of this process maps): a loader linking mcpd's own, or another
//   tenant's, beside its file would have them served as its tenant's, or
//   break mcpd's. Never so otherwise: SQLite makes them, one name each.
int open_regular(const char* path, int flags, int mode) {
  const int fd = ::open(path, flags | O_NONBLOCK, mode);
  if (fd < 0) return fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISBLK(st.st_mode) ||
      (S_ISREG(st.st_mode) && st.st_nlink > 1 && beside_database(path))) {
    ::close(fd);
    errno = EACCES;
    return -1;
  }
  if ((flags & O_NONBLOCK) == 0) {
    const int now = ::fcntl(fd, F_GETFL);
    if (now == -1 || ::fcntl(fd, F_SETFL, now & ~O_NONBLOCK) == -1) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

int open_file(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if (name != nullptr && (flags & kTempFlags) == 0) return g_base->xOpen(g_base, name, file, flags, out_flags);
  auto* mem = reinterpret_cast<MemFile*>(file);
  mem->data = new (std::nothrow) Chunks(t_budget);
  if (!mem->data) {
    file->pMethods = nullptr;  // not opened: SQLite will not close it
    return SQLITE_NOMEM;
  }
  file->pMethods = &kMemMethods;
  if (out_flags) *out_flags = flags;
  return SQLITE_OK;
}

}  // namespace

std::optional<FileId> opened_main_file(sqlite3* db) {
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK) return std::nullopt;
  const int fd = unix_descriptor(file);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

void set_temp_memory_cap(std::size_t bytes) { g_cap.store(bytes); }
std::size_t temp_memory_used() { return g_used.load(); }

TempScope::TempScope(TempBudget* budget) : outer_(t_budget) { t_budget = budget; }
TempScope::~TempScope() { t_budget = outer_; }

const char* memory_temp_vfs() {
  static const bool registered = [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (!g_base) return false;
    g_vfs = *g_base;  // everything but opening is the default VFS's
    g_vfs.zName = kVfsName;
    g_vfs.pNext = nullptr;
    g_vfs.szOsFile = std::max<int>(g_base->szOsFile, static_cast<int>(sizeof(MemFile)));
    g_vfs.xOpen = open_file;
    // Every unix VFS of the process opens through it from now on.
    if (g_base->iVersion < 3 || !g_base->xSetSystemCall ||
        g_base->xSetSystemCall(g_base, "open", reinterpret_cast<sqlite3_syscall_ptr>(&open_regular)) != SQLITE_OK) {
      return false;
    }
    return sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0) == SQLITE_OK;
  }();
  return registered ? kVfsName : nullptr;
}

}  // namespace sluice::mcpd

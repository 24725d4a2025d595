// Temporary files in memory, within a budget.
//
// What a sort, DISTINCT, GROUP BY, materialised subquery or recursive CTE
// holds beyond SQLite's page cache goes to temporary files: sort runs of
// about the cache's size (each sorted on its own, then merged a row per VM
// step, so the deadline is looked at throughout) and the pages of
// temporary tables. Those hold a tenant's rows. Data-source connections
// open through the VFS registered here: the database file itself goes to
// the default (unix) VFS, unchanged; every temporary file is a run of heap
// chunks that never touches a disk, and a write that would take the
// connection's temporary files past its budget, or all temporary files of
// the process past their cap, fails (SQLITE_FULL), which the connection
// reports as a query needing too much memory. The chunks come from malloc,
// not from SQLite's heap: its hard limit (main.cpp) stays for SQLite's own
// memory and the audit log's commits.
//
// (temp_store=MEMORY would keep them in memory too, but SQLite then sorts
// the whole input in one VM step, past any deadline, and nothing bounds it
// but the process's heap limit.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

struct sqlite3;

namespace sluice::mcpd {

// The bytes of temporary files one connection may hold at once.
struct TempBudget {
  std::size_t limit = 0;
  std::size_t used = 0;
  bool exceeded = false;    // a write was refused for this budget since the last reset
  bool process_full = false;  // ... or for the process's cap (other statements' files)
};

// The budget temporary files opened on this thread, while in scope, are
// charged to (the connection running a statement). A file opened with no
// budget in scope may hold nothing.
class TempScope {
 public:
  explicit TempScope(TempBudget* budget);
  ~TempScope();
  TempScope(const TempScope&) = delete;
  TempScope& operator=(const TempScope&) = delete;

 private:
  TempBudget* outer_;
};

// The name of the VFS to open data sources with (registered on first
// use, not as the default); nullptr if it could not be registered. The
// first call also replaces the unix VFS's open(2), for every SQLite file of
// the process, with one that never blocks, opens no FIFO, socket or block
// device, and no -wal or -shm file with a second name (temp_files.cpp):
// make it before other threads open SQLite files (the syscall table is
// not guarded).
[[nodiscard]] const char* memory_temp_vfs();

// A file, by device and inode: what two paths (or links) share when they
// lead to the same file. {} is none.
struct FileId {
  std::uint64_t dev = 0, ino = 0;
  auto operator<=>(const FileId&) const = default;
};

// The file `db`'s main database was opened on, read through the
// descriptor SQLite holds (fstat): what the connection reads, whatever its
// path names now. Nothing if the connection did not open it through this
// VFS, or the unix VFS's file is not laid out as this code knows it (fail
// closed).
[[nodiscard]] std::optional<FileId> opened_main_file(sqlite3* db);

// All temporary files of the process together hold at most `bytes`
// (default kTempMemoryCap). Set before serving.
inline constexpr std::size_t kTempMemoryCap = std::size_t{768} << 20;
void set_temp_memory_cap(std::size_t bytes);
// Bytes the process's temporary files hold now.
[[nodiscard]] std::size_t temp_memory_used();

}  // namespace sluice::mcpd

#include "cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace sluice::agent {
namespace {

Status write_file(const std::string& path, std::string_view value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path);
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    errno = saved;
    return errno_error("write " + path);
  }
  return {};
}

bool cgroup_empty(const std::string& path) {
  std::ifstream events(path + "/cgroup.events");
  std::string key, value;
  while (events >> key >> value) {
    if (key == "populated") return value == "0";
  }
  return true;  // gone
}

}  // namespace

Result<Cgroup2Mount> parse_cgroup2_mount(std::string_view mountinfo) {
  // Every mount in order: id parent major:minor root mountpoint options
  // [optional...] - fstype source super. A later mount at or above a
  // mount point hides it (a container that mounted its own cgroup2 over
  // the host's hybrid tree): the hierarchy is the last cgroup2 mount that
  // nothing later covers.
  struct Entry {
    std::string mountpoint;
    bool cgroup2 = false;
  };
  std::vector<Entry> mounts;
  std::istringstream in{std::string(mountinfo)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    std::size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 1 >= f.size()) continue;
    mounts.push_back({f[4], f[dash + 1] == "cgroup2"});
  }
  const auto covers = [](const std::string& upper, const std::string& lower) {
    return upper == lower || upper == "/" || (lower.starts_with(upper) && lower[upper.size()] == '/');
  };
  const Entry* found = nullptr;
  for (std::size_t i = 0; i < mounts.size(); ++i) {
    if (!mounts[i].cgroup2) continue;
    bool hidden = false;
    for (std::size_t j = i + 1; j < mounts.size() && !hidden; ++j) {
      hidden = covers(mounts[j].mountpoint, mounts[i].mountpoint);
    }
    if (!hidden) found = &mounts[i];
  }
  if (!found) return error("no cgroup2 mount in /proc/self/mountinfo");
  Cgroup2Mount m;
  m.mountpoint = found->mountpoint;
  constexpr std::string_view kBase = "/sys/fs/cgroup";
  if (m.mountpoint == kBase) {
    m.nft_prefix = "";
  } else if (m.mountpoint.starts_with(std::string(kBase) + "/")) {
    m.nft_prefix = m.mountpoint.substr(kBase.size() + 1);
  } else {
    return error("cgroup2 is mounted at " + m.mountpoint +
                 ", outside /sys/fs/cgroup, where nftables cannot resolve cgroup paths");
  }
  return m;
}

Result<Cgroup2Mount> find_cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return errno_error("open /proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return parse_cgroup2_mount(text.str());
}

Result<std::uint64_t> cgroup_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
  return static_cast<std::uint64_t>(st.st_ino);
}

Status make_directories(const std::string& path, mode_t mode) {
  std::size_t pos = 1;
  while (true) {
    pos = path.find('/', pos);
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return errno_error("mkdir " + prefix);
    }
    if (pos == std::string::npos) return {};
    ++pos;
  }
}

Status remove_cgroup_tree(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return errno_error("stat " + path);
  }
  if (auto killed = write_file(path + "/cgroup.kill", "1"); !killed && killed.error().err != ENOENT) {
    return killed;
  }
  // cgroup.kill is asynchronous: wait (bounded) until every process is gone.
  for (int i = 0; i < 500 && !cgroup_empty(path); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (DIR* dir = ::opendir(path.c_str())) {
    std::vector<std::string> children;
    while (dirent* e = ::readdir(dir)) {
      if (e->d_type == DT_DIR && std::string_view(e->d_name) != "." &&
          std::string_view(e->d_name) != "..") {
        children.push_back(path + "/" + e->d_name);
      }
    }
    ::closedir(dir);
    for (const std::string& child : children) {
      if (auto removed = remove_cgroup_tree(child); !removed) return removed;
    }
  }
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return errno_error("rmdir " + path);
  return {};
}

Status move_to_cgroup(const std::string& path, pid_t pid) {
  return write_file(path + "/cgroup.procs", std::to_string(pid));
}

bool valid_tenant_name(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.front() == '_') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace sluice::agent

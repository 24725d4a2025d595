// Errors of the agent: an errno (0 when not a system error) and what was
// being done. libbpf's -errno and libc's errno are converted once, here.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include <tl/expected.hpp>

namespace sluice::agent {

struct SysError {
  int err = 0;
  std::string what;

  [[nodiscard]] std::string to_string() const {
    return err ? what + ": " + std::strerror(err) : what;
  }
};

template <class T>
using Result = tl::expected<T, SysError>;
using Status = tl::expected<void, SysError>;

inline tl::unexpected<SysError> errno_error(std::string what) {
  return tl::unexpected(SysError{errno, std::move(what)});
}
// `rc` is a negative errno, as libbpf returns.
inline tl::unexpected<SysError> sys_error(int rc, std::string what) {
  return tl::unexpected(SysError{rc < 0 ? -rc : rc, std::move(what)});
}
inline tl::unexpected<SysError> error(std::string what) {
  return tl::unexpected(SysError{0, std::move(what)});
}

// The directory `path` names a file in ("." for a bare name).
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace sluice::agent

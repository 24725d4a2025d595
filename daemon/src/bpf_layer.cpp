#include "bpf_layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgroup.h"
#include "sluice.skel.h"

namespace sluice::agent {
namespace {

std::string link_pin(const std::string& dir, const bpf_program* prog) {
  return dir + "/link_" + bpf_program__name(prog);
}

// The cgroup a link is attached to, 0 when it was detached (defunct).
Result<std::uint64_t> link_cgroup(int link_fd) {
  bpf_link_info info{};
  __u32 len = sizeof info;
  if (int rc = bpf_obj_get_info_by_fd(link_fd, &info, &len); rc < 0) {
    return sys_error(rc, "bpf_obj_get_info_by_fd(link)");
  }
  if (info.type != BPF_LINK_TYPE_CGROUP) return std::uint64_t{0};
  return static_cast<std::uint64_t>(info.cgroup.cgroup_id);
}

// Reuse the pinned link so the kernel keeps enforcing across restarts and
// upgrades; a defunct one (detached behind our back) is replaced.
Status attach_or_reuse(bpf_program* prog, int cgroup_fd, std::uint64_t cgroup,
                       const std::string& pin) {
  // Look before opening: libbpf logs a warning for every absent pin.
  bpf_link* link = ::access(pin.c_str(), F_OK) == 0 ? bpf_link__open(pin.c_str()) : nullptr;
  if (link) {
    auto attached = link_cgroup(bpf_link__fd(link));
    if (attached && *attached == cgroup) {
      const int rc = bpf_link__update_program(link, prog);
      bpf_link__destroy(link);  // closes our fd; the pin keeps the link
      if (rc < 0) return sys_error(rc, "update pinned link " + pin);
      return {};
    }
    bpf_link__destroy(link);
    ::unlink(pin.c_str());  // defunct or elsewhere: replace it below
  } else if (errno != ENOENT) {
    return errno_error("open pinned link " + pin);
  }
  link = bpf_program__attach_cgroup(prog, cgroup_fd);
  if (!link) return errno_error(std::string("attach ") + bpf_program__name(prog));
  const int rc = bpf_link__pin(link, pin.c_str());
  bpf_link__destroy(link);
  if (rc < 0) return sys_error(rc, "pin link " + pin);
  return {};
}

int on_ring_event(void* ctx, void* data, std::size_t size) {
  auto* fn = static_cast<std::function<void(const sl_event&)>*>(ctx);
  if (size >= sizeof(sl_event) && *fn) (*fn)(*static_cast<const sl_event*>(data));
  return 0;
}

}  // namespace

Result<std::unique_ptr<BpfLayer>> BpfLayer::open(const std::string& pin_dir,
                                                 const std::string& tenants_cgroup) {
  std::unique_ptr<BpfLayer> layer(new BpfLayer());
  layer->pin_dir_ = pin_dir;
  layer->tenants_cgroup_ = tenants_cgroup;
  if (auto s = make_directories(pin_dir, 0700); !s) return tl::unexpected(s.error());

  layer->skel_ = sluice_bpf__open();
  if (!layer->skel_) return errno_error("open BPF object");
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, layer->skel_->obj) {
    if (bpf_map__type(map) == BPF_MAP_TYPE_ARRAY && std::string_view(bpf_map__name(map)).find('.') !=
                                                        std::string_view::npos) {
      continue;  // .rodata/.bss: internal, never pinned
    }
    const std::string path = pin_dir + "/" + bpf_map__name(map);
    if (int rc = bpf_map__set_pin_path(map, path.c_str()); rc < 0) {
      return sys_error(rc, "set pin path " + path);
    }
  }
  // Load reuses every map already pinned (same ABI version: same layout)
  // and pins the ones it creates.
  if (int rc = sluice_bpf__load(layer->skel_); rc < 0) return sys_error(rc, "load BPF object");

  layer->cgroup_fd_ = ::open(tenants_cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (layer->cgroup_fd_ < 0) return errno_error("open " + tenants_cgroup);
  if (auto s = layer->attach_all(); !s) return tl::unexpected(s.error());
  // An upgrade to a new ABI version leaves the old version's links attached
  // (judging against frozen maps): now that the new ones enforce, remove them.
  const std::string instance_dir = pin_dir.substr(0, pin_dir.rfind('/'));
  const std::string own = pin_dir.substr(pin_dir.rfind('/') + 1);
  if (DIR* dir = ::opendir(instance_dir.c_str())) {
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name.size() > 1 && name[0] == 'v' && name != own) stale.push_back(instance_dir + "/" + name);
    }
    ::closedir(dir);
    for (const std::string& old : stale) {
      if (auto s = uninstall(old); !s) return tl::unexpected(s.error());
    }
  }

  layer->events_ = ring_buffer__new(bpf_map__fd(layer->skel_->maps.sl_events), on_ring_event,
                                    &layer->on_event_, nullptr);
  if (!layer->events_) return errno_error("ring buffer");
  return layer;
}

BpfLayer::~BpfLayer() {
  if (events_) ring_buffer__free(events_);
  if (cgroup_fd_ >= 0) ::close(cgroup_fd_);
  if (skel_) sluice_bpf__destroy(skel_);  // links stay: they are pinned
}

Status BpfLayer::attach_all() {
  auto id = cgroup_id(tenants_cgroup_);
  if (!id) return tl::unexpected(id.error());
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (auto s = attach_or_reuse(prog, cgroup_fd_, *id, link_pin(pin_dir_, prog)); !s) return s;
  }
  return {};
}

Result<bool> BpfLayer::links_intact() {
  auto id = cgroup_id(tenants_cgroup_);
  if (!id) return tl::unexpected(id.error());
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    const int fd = bpf_obj_get(link_pin(pin_dir_, prog).c_str());
    if (fd < 0) return false;
    auto attached = link_cgroup(fd);
    ::close(fd);
    if (!attached) return tl::unexpected(attached.error());
    if (*attached != *id) return false;
  }
  return true;
}

Status BpfLayer::repair_links() { return attach_all(); }

int BpfLayer::map_fd(BpfMap map) const {
  switch (map) {
    case BpfMap::cgroups: return bpf_map__fd(skel_->maps.sl_cgroups);
    case BpfMap::pins4: return bpf_map__fd(skel_->maps.sl_pins4);
    case BpfMap::pins6: return bpf_map__fd(skel_->maps.sl_pins6);
    case BpfMap::blocks4: return bpf_map__fd(skel_->maps.sl_blocks4);
    case BpfMap::blocks6: return bpf_map__fd(skel_->maps.sl_blocks6);
    case BpfMap::deny4: return bpf_map__fd(skel_->maps.sl_deny4);
    case BpfMap::deny6: return bpf_map__fd(skel_->maps.sl_deny6);
  }
  return -1;
}

Status BpfLayer::update(BpfMap map, const std::string& key, const std::string& value) {
  if (int rc = bpf_map_update_elem(map_fd(map), key.data(), value.data(), BPF_ANY); rc < 0) {
    return sys_error(rc, "update BPF map");
  }
  return {};
}

Status BpfLayer::erase(BpfMap map, const std::string& key) {
  if (int rc = bpf_map_delete_elem(map_fd(map), key.data()); rc < 0 && rc != -ENOENT) {
    return sys_error(rc, "delete from BPF map");
  }
  return {};
}

std::optional<std::string> BpfLayer::lookup(BpfMap map, const std::string& key) {
  bpf_map_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(map_fd(map), &info, &len) < 0) return std::nullopt;
  std::string value(info.value_size, '\0');
  if (bpf_map_lookup_elem(map_fd(map), key.data(), value.data()) != 0) return std::nullopt;
  return value;
}

Result<std::vector<std::string>> BpfLayer::keys(BpfMap map) {
  const int fd = map_fd(map);
  bpf_map_info info{};
  __u32 len = sizeof info;
  if (int rc = bpf_obj_get_info_by_fd(fd, &info, &len); rc < 0) return sys_error(rc, "map info");
  std::vector<std::string> out;
  std::string key(info.key_size, '\0'), next(info.key_size, '\0');
  const void* prev = nullptr;
  // Bounded by max_entries: a map cannot hold more, so a longer walk is a bug.
  for (__u32 i = 0; i <= info.max_entries; ++i) {
    const int rc = bpf_map_get_next_key(fd, prev, next.data());
    if (rc == -ENOENT) return out;
    if (rc < 0) return sys_error(rc, "iterate BPF map");
    out.push_back(next);
    key = next;
    prev = key.data();
  }
  return error("BPF map iteration did not end");
}

Status BpfLayer::reconcile(BpfMap map, const MapContent& want) {
  auto existing = keys(map);
  if (!existing) return tl::unexpected(existing.error());
  for (const std::string& k : *existing) {
    if (!want.contains(k)) {
      if (auto s = erase(map, k); !s) return s;
    }
  }
  for (const auto& [k, v] : want) {
    if (auto s = update(map, k, v); !s) return s;
  }
  return {};
}

std::optional<std::uint32_t> BpfLayer::socket_ruleset(int socket_fd) {
  sl_sock_val v{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sl_socks), &socket_fd, &v) != 0) return std::nullopt;
  return v.ruleset;
}

BpfCounters BpfLayer::counters() {
  BpfCounters c;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return c;
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus));
  const auto sum = [&](std::uint32_t index) {
    std::uint64_t total = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sl_counters), &index, values.data()) == 0) {
      for (std::uint64_t v : values) total += v;
    }
    return total;
  };
  c.allowed = sum(SL_CNT_ALLOW);
  c.denied = sum(SL_CNT_DENY);
  c.events_dropped = sum(SL_CNT_EVENT_DROPPED);
  return c;
}

int BpfLayer::events_fd() const { return ring_buffer__epoll_fd(events_); }

int BpfLayer::drain_events(const std::function<void(const sl_event&)>& on_event) {
  on_event_ = on_event;
  const int n = ring_buffer__consume(events_);
  on_event_ = nullptr;
  return n;
}

Status BpfLayer::uninstall(const std::string& pin_dir) {
  DIR* dir = ::opendir(pin_dir.c_str());
  if (!dir) {
    if (errno == ENOENT) return {};
    return errno_error("open " + pin_dir);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  ::closedir(dir);
  for (const std::string& name : names) {
    const std::string path = pin_dir + "/" + name;
    if (name.starts_with("link_")) {
      const int fd = bpf_obj_get(path.c_str());
      if (fd >= 0) {
        bpf_link_detach(fd);
        ::close(fd);
      }
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("unlink " + path);
  }
  if (::rmdir(pin_dir.c_str()) != 0 && errno != ENOENT) return errno_error("rmdir " + pin_dir);
  // The instance directory above the versioned one, if now empty.
  const std::string parent = pin_dir.substr(0, pin_dir.rfind('/'));
  ::rmdir(parent.c_str());
  return {};
}

}  // namespace sluice::agent

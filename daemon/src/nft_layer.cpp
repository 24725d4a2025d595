#include "nft_layer.h"

#include <memory>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ctime>

#include "nft_text.h"

namespace sluice::agent {

Result<std::unique_ptr<NftLayer>> NftLayer::open() {
  std::unique_ptr<NftLayer> layer(new NftLayer());
  layer->ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!layer->ctx_) return error("nft_ctx_new failed");
  if (nft_ctx_buffer_output(layer->ctx_) != 0 || nft_ctx_buffer_error(layer->ctx_) != 0) {
    return error("nft: cannot buffer output");
  }
  // Never resolve names or services on output; terse: no set elements.
  nft_ctx_output_set_flags(layer->ctx_, NFT_CTX_OUTPUT_NUMERIC_ALL | NFT_CTX_OUTPUT_TERSE);
  return layer;
}

NftLayer::~NftLayer() {
  if (ctx_) nft_ctx_free(ctx_);
  if (nl_) mnl_socket_close(nl_);
}

Status NftLayer::run(const std::string& commands) {
  const int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  std::string err = nft_ctx_get_error_buffer(ctx_);
  nft_ctx_get_output_buffer(ctx_);  // drain
  if (rc != 0) {
    // nft's message names the offending line; keep it bounded.
    if (err.size() > 2000) err.resize(2000);
    return error("nft: " + err);
  }
  return {};
}

Result<std::optional<std::uint64_t>> NftLayer::generation(const std::string& table) {
  const int rc = nft_run_cmd_from_buffer(ctx_, ("list table inet " + table).c_str());
  const std::string out = nft_ctx_get_output_buffer(ctx_);
  const std::string err = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0) {
    if (err.find("No such file or directory") != std::string::npos) return std::nullopt;
    return error("nft: " + err.substr(0, 2000));
  }
  return parse_generation(out);
}

Status NftLayer::delete_table(const std::string& table) {
  return run("table inet " + table + "\ndelete table inet " + table + "\n");
}

namespace {

// Elements per netlink message: the element list is one attribute, whose
// length field is 16 bits; 256 IPv6 ranges (key and key end, 20 bytes
// each, plus headers) stay well inside it.
constexpr std::size_t kElementsPerMessage = 256;

void add_element(nftnl_set* set, const NftBlock& b, bool interval) {
  nftnl_set_elem* e = nftnl_set_elem_alloc();
  const std::string key = nft_element_key(b.block.addr, b.port);
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key.data(), static_cast<std::uint32_t>(key.size()));
  if (interval) {
    // Concatenated ranges (pipapo): start and end of each field.
    const std::string end = nft_element_key(last_address(b.block), b.port);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY_END, end.data(), static_cast<std::uint32_t>(end.size()));
  }
  nftnl_set_elem_add(set, e);
}

}  // namespace

Status NftLayer::apply_elements(const std::string& table, const std::vector<SetDelta>& deltas) {
  if (deltas.empty()) return {};
  if (!nl_) {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl_) return errno_error("netfilter netlink socket");
    if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      mnl_socket_close(nl_);
      nl_ = nullptr;
      return errno_error("bind netfilter netlink socket");
    }
    // Acks without the request echoed back (an error ack would otherwise
    // carry the whole 10+ KiB message), and a bound on every wait: the
    // agent's only thread must never block for good on the kernel.
    const int one = 1;
    ::setsockopt(mnl_socket_get_fd(nl_), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    const timeval timeout{5, 0};
    ::setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    seq_ = static_cast<std::uint32_t>(::time(nullptr));
  }
  // Pages several messages large, with room for one message to overrun a
  // page (as nft itself allocates): a message larger than its page would
  // otherwise be dropped from the batch without a word.
  const auto page = static_cast<std::uint32_t>(::getpagesize());
  nftnl_batch* batch = nftnl_batch_alloc(page * 32, 0xffff + page);
  if (!batch) return error("nftnl batch");
  std::uint32_t messages = 0;
  std::size_t built = 0;  // bytes of every message, to check the batch kept them all
  const std::uint32_t first_seq = seq_;
  built += nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch)), seq_++)->nlmsg_len;
  nftnl_batch_update(batch);
  const auto emit = [&](const SetDelta& d, const std::vector<NftBlock>& elems, std::uint16_t type) {
    for (std::size_t at = 0; at < elems.size(); at += kElementsPerMessage) {
      nftnl_set* set = nftnl_set_alloc();
      nftnl_set_set_str(set, NFTNL_SET_TABLE, table.c_str());
      nftnl_set_set_str(set, NFTNL_SET_NAME, d.set.c_str());
      for (std::size_t i = at; i < elems.size() && i < at + kElementsPerMessage; ++i) {
        add_element(set, elems[i], d.interval);
      }
      nlmsghdr* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch)), type,
                                            NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, seq_++);
      nftnl_set_elems_nlmsg_build_payload(nlh, set);
      built += nlh->nlmsg_len;
      nftnl_set_free(set);
      nftnl_batch_update(batch);
      ++messages;
    }
  };
  for (const SetDelta& d : deltas) emit(d, d.removed, NFT_MSG_DELSETELEM);
  for (const SetDelta& d : deltas) emit(d, d.added, NFT_MSG_NEWSETELEM);
  built += nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch)), seq_++)->nlmsg_len;
  nftnl_batch_update(batch);

  const int iov_len = nftnl_batch_iovec_len(batch);
  std::vector<iovec> iov(static_cast<std::size_t>(iov_len));
  nftnl_batch_iovec(batch, iov.data(), static_cast<std::uint32_t>(iov_len));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof kernel;
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  std::size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (total != built) {
    nftnl_batch_free(batch);
    return error("nft element batch lost messages while building");
  }
  const ssize_t sent = ::sendmsg(mnl_socket_get_fd(nl_), &msg, 0);
  nftnl_batch_free(batch);
  if (sent < 0) return errno_error("send nft element batch");
  if (static_cast<std::size_t>(sent) != total) return error("nft element batch sent partially");

  // One ack per message; the first error aborts the whole transaction in
  // the kernel (nothing of it applies) and is reported here.
  std::vector<char> buf(1 << 16);
  std::uint32_t acked = 0;
  const std::uint32_t portid = mnl_socket_get_portid(nl_);
  while (acked < messages) {
    const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) {
      // Unsure what the kernel did: drop the socket (stale acks go with it).
      const int err = errno;
      mnl_socket_close(nl_);
      nl_ = nullptr;
      errno = err;
      return errno_error("receive nft element acks");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_pid != portid || h->nlmsg_seq < first_seq) continue;  // not ours
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (e->error != 0) return tl::unexpected(SysError{-e->error, "nft element transaction"});
      ++acked;
    }
  }
  return {};
}

}  // namespace sluice::agent

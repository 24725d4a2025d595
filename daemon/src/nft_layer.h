// libnftables, natively: one context, every command batch one transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <memory>

#include "nft_text.h"
#include "result.h"

struct nft_ctx;
struct mnl_socket;

namespace sluice::agent {

class NftLayer {
 public:
  static Result<std::unique_ptr<NftLayer>> open();
  ~NftLayer();
  NftLayer(const NftLayer&) = delete;
  NftLayer& operator=(const NftLayer&) = delete;

  // Runs a batch atomically; on failure nothing changed and the error
  // carries nft's own message.
  Status run(const std::string& commands);
  // The generation recorded in the table's comment; nullopt when the table
  // is absent or carries no Sluice comment.
  Result<std::optional<std::uint64_t>> generation(const std::string& table);
  Status delete_table(const std::string& table);  // absent is success
  // Set element changes as one binary netlink transaction (libnftnl):
  // removals, then additions, all or nothing. No text to parse and no
  // userspace interval bookkeeping, so cost grows with the change, not
  // with the size of the sets.
  Status apply_elements(const std::string& table, const std::vector<SetDelta>& deltas);

 private:
  NftLayer() = default;
  nft_ctx* ctx_ = nullptr;
  mnl_socket* nl_ = nullptr;
  std::uint32_t seq_ = 0;
};

}  // namespace sluice::agent

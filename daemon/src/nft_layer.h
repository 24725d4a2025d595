// libnftables, natively: one context, every command batch one transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memory>

#include "result.h"

struct nft_ctx;

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

 private:
  NftLayer() = default;
  nft_ctx* ctx_ = nullptr;
};

}  // namespace sluice::agent

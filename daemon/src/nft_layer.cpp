#include "nft_layer.h"

#include <memory>

#include <nftables/libnftables.h>

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
  const std::string marker = "comment \"" + nft_generation_comment(0).substr(0, 18);
  const auto at = out.find(marker);
  if (at == std::string::npos) return std::nullopt;
  std::uint64_t gen = 0;
  for (std::size_t i = at + marker.size(); i < out.size() && out[i] >= '0' && out[i] <= '9'; ++i) {
    gen = gen * 10 + static_cast<std::uint64_t>(out[i] - '0');
  }
  return gen;
}

Status NftLayer::delete_table(const std::string& table) {
  return run("table inet " + table + "\ndelete table inet " + table + "\n");
}

}  // namespace sluice::agent

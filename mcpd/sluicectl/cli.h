// Shared pieces of sluicectl's subcommands.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace sluice::ctl {

// Exit codes: documented in docs/operations.md and relied on by scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and found a problem it could not fix
inline constexpr int kExitInvalid = 2;  // invalid input, usage or unreadable file

// Reads a whole file ("-" for standard input) of at most `max_bytes`;
// on failure prints why to stderr and returns nullopt.
std::optional<std::string> read_input(const std::string& path, std::size_t max_bytes);

// Register `sluicectl policy ...` and `sluicectl agent ...`; `exit_code`
// receives the result.
void add_policy_commands(CLI::App& app, int& exit_code);
void add_agent_commands(CLI::App& app, int& exit_code);
// `sluicectl bootstrap`, `key ...`, `user ...`, `audit verify`: sluice-mcpd.
void add_mcpd_commands(CLI::App& app, int& exit_code);

}  // namespace sluice::ctl

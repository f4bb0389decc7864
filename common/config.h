// Typed configuration shared by every sparsevid binary.
//
// A binary declares each key once (dotted name, target field, help, optional
// validator); the field's value at declaration time is the default. The
// schema then loads a YAML file (nested maps follow the dots: `queue.capacity`
// is `queue: {capacity: ...}`), applies `--queue.capacity=...` command-line
// overrides, and validates. Unknown keys and bad values are errors that name
// the key, so a misspelt config fails at start instead of being ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include "absl/strings/string_view.h"
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sparsevid::config {

// Checks a parsed value; the message should say what is wrong with it
// (the schema prefixes the key name).
template <typename T>
using Validator = std::function<absl::Status(const T&)>;

class ConfigSchema {
 public:
  ConfigSchema();
  ~ConfigSchema();
  ConfigSchema(const ConfigSchema&) = delete;
  ConfigSchema& operator=(const ConfigSchema&) = delete;

  // Declares `key` bound to *target (which must outlive the schema). Keys
  // are [a-z0-9_] segments joined by '.'; declaring one twice is a bug and
  // aborts.
  void AddString(std::string key, std::string* target, std::string help,
                 Validator<std::string> validator = nullptr);
  void AddInt(std::string key, int* target, std::string help,
              Validator<int> validator = nullptr);
  void AddInt64(std::string key, int64_t* target, std::string help,
                Validator<int64_t> validator = nullptr);
  void AddDouble(std::string key, double* target, std::string help,
                 Validator<double> validator = nullptr);
  void AddBool(std::string key, bool* target, std::string help);

  // Merges a YAML document into the bound fields. Every leaf must be a
  // declared key holding a scalar.
  absl::Status LoadYamlString(absl::string_view yaml_text);
  absl::Status LoadYamlFile(const std::string& path);

  // Sets one key from its text form (as given on the command line).
  absl::Status SetFromString(absl::string_view key, absl::string_view value);

  // Runs every validator; the first failure names its key.
  absl::Status Validate() const;

  // Declared keys in declaration order.
  std::vector<std::string> Keys() const;
  // One line per key: name, current value, help (for --help and docs).
  std::string Describe() const;
  // Help text of a key, with its type.
  absl::StatusOr<std::string> HelpOf(absl::string_view key) const;
  // Current value of a key as text (for logging the effective config).
  absl::StatusOr<std::string> ValueAsString(absl::string_view key) const;

  struct Entry;  // one declared key (defined in config.cc)

 private:
  absl::Status Add(std::unique_ptr<Entry> entry);
  Entry* Find(absl::string_view key) const;

  std::vector<std::unique_ptr<Entry>> entries_;
  std::map<std::string, Entry*, std::less<>> by_key_;
};

// What ParseCommandLine decided.
enum class CommandLineOutcome { kRun, kHelpPrinted };

// The standard start-up sequence of a binary:
//   1. parse argv: `--config FILE` and `--<key> VALUE` for every declared key
//      (`--help` prints every key with its default and help to `out`);
//   2. load FILE (if given) into the schema;
//   3. apply the command-line overrides (flags win over the file);
//   4. validate.
// Errors name the offending key or flag.
absl::StatusOr<CommandLineOutcome> ParseCommandLine(
    ConfigSchema& schema, int argc, const char* const* argv,
    const std::string& description, std::ostream& out);

// Validator helpers.
template <typename T>
Validator<T> InRange(T lo, T hi) {
  return [lo, hi](const T& v) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError("must be in [" + std::to_string(lo) +
                                        ", " + std::to_string(hi) + "], got " +
                                        std::to_string(v));
    }
    return absl::OkStatus();
  };
}
Validator<std::string> NonEmpty();
// host:port, [v6]:port or unix:path; port 0 allows "any free port".
// Empty is accepted when allow_empty (meaning "disabled").
Validator<std::string> ListenAddress(bool allow_empty);
Validator<std::string> OneOf(std::vector<std::string> allowed);

}  // namespace sparsevid::config

#include "common/config.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/version.h"
#include "yaml-cpp/yaml.h"

namespace sparsevid::config {

struct ConfigSchema::Entry {
  std::string key;
  std::string type_name;
  std::string help;
  std::function<absl::Status(absl::string_view)> set;  // parse + store
  std::function<std::string()> get;
  std::function<absl::Status()> validate;
};

namespace {

bool IsValidKey(absl::string_view key) {
  if (key.empty()) return false;
  for (absl::string_view seg : absl::StrSplit(key, '.')) {
    if (seg.empty()) return false;
    for (char c : seg) {
      if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_')) {
        return false;
      }
    }
  }
  return true;
}

absl::Status ParseValue(absl::string_view text, std::string* out) {
  *out = std::string(text);
  return absl::OkStatus();
}
absl::Status ParseValue(absl::string_view text, int* out) {
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects a 32-bit integer, got '", text, "'"));
  }
  return absl::OkStatus();
}
absl::Status ParseValue(absl::string_view text, int64_t* out) {
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects a 64-bit integer, got '", text, "'"));
  }
  return absl::OkStatus();
}
absl::Status ParseValue(absl::string_view text, double* out) {
  double v = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &v) ||
      !std::isfinite(v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects a finite number, got '", text, "'"));
  }
  *out = v;
  return absl::OkStatus();
}
absl::Status ParseValue(absl::string_view text, bool* out) {
  const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (v == "true" || v == "yes" || v == "on" || v == "1") {
    *out = true;
  } else if (v == "false" || v == "no" || v == "off" || v == "0") {
    *out = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("expects true or false, got '", text, "'"));
  }
  return absl::OkStatus();
}

std::string Format(const std::string& v) { return v; }
std::string Format(int v) { return std::to_string(v); }
std::string Format(int64_t v) { return std::to_string(v); }
std::string Format(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
std::string Format(bool v) { return v ? "true" : "false"; }

template <typename T>
std::unique_ptr<ConfigSchema::Entry> MakeEntry(std::string key, T* target,
                                               std::string type_name,
                                               std::string help,
                                               Validator<T> validator) {
  auto e = std::make_unique<ConfigSchema::Entry>();
  e->key = std::move(key);
  e->type_name = std::move(type_name);
  e->help = std::move(help);
  e->set = [target](absl::string_view text) {
    T value{};
    if (absl::Status s = ParseValue(text, &value); !s.ok()) return s;
    *target = std::move(value);
    return absl::OkStatus();
  };
  e->get = [target] { return Format(*target); };
  e->validate = [target, validator = std::move(validator)] {
    return validator ? validator(*target) : absl::OkStatus();
  };
  return e;
}

absl::Status KeyError(absl::string_view key, const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("config key '", key, "': ", s.message()));
}

}  // namespace

ConfigSchema::ConfigSchema() = default;
ConfigSchema::~ConfigSchema() = default;

// Declaring keys is programmer work; a bad declaration is a bug, not input.
absl::Status ConfigSchema::Add(std::unique_ptr<Entry> entry) {
  if (!IsValidKey(entry->key) || by_key_.count(entry->key) != 0) {
    return absl::InternalError(
        absl::StrCat("bad or duplicate config key declaration '", entry->key, "'"));
  }
  by_key_.emplace(entry->key, entry.get());
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

#define SPARSEVID_ADD_OR_DIE(expr)                               \
  do {                                                           \
    absl::Status add_status = (expr);                            \
    if (!add_status.ok()) {                                      \
      std::fprintf(stderr, "%s\n", add_status.ToString().c_str()); \
      std::abort();                                              \
    }                                                            \
  } while (0)

void ConfigSchema::AddString(std::string key, std::string* target,
                             std::string help, Validator<std::string> v) {
  SPARSEVID_ADD_OR_DIE(Add(MakeEntry(std::move(key), target, "string",
                                     std::move(help), std::move(v))));
}
void ConfigSchema::AddInt(std::string key, int* target, std::string help,
                          Validator<int> v) {
  SPARSEVID_ADD_OR_DIE(Add(
      MakeEntry(std::move(key), target, "int", std::move(help), std::move(v))));
}
void ConfigSchema::AddInt64(std::string key, int64_t* target, std::string help,
                            Validator<int64_t> v) {
  SPARSEVID_ADD_OR_DIE(Add(MakeEntry(std::move(key), target, "int64",
                                     std::move(help), std::move(v))));
}
void ConfigSchema::AddDouble(std::string key, double* target, std::string help,
                             Validator<double> v) {
  SPARSEVID_ADD_OR_DIE(Add(MakeEntry(std::move(key), target, "number",
                                     std::move(help), std::move(v))));
}
void ConfigSchema::AddBool(std::string key, bool* target, std::string help) {
  SPARSEVID_ADD_OR_DIE(Add(MakeEntry<bool>(std::move(key), target, "bool",
                                           std::move(help), nullptr)));
}
#undef SPARSEVID_ADD_OR_DIE

ConfigSchema::Entry* ConfigSchema::Find(absl::string_view key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second;
}

absl::Status ConfigSchema::SetFromString(absl::string_view key,
                                         absl::string_view value) {
  Entry* e = Find(key);
  if (e == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown config key '", key, "'"));
  }
  if (absl::Status s = e->set(value); !s.ok()) return KeyError(key, s);
  return absl::OkStatus();
}

namespace {

// Walks a YAML map; `prefix` is the dotted path of `node`.
absl::Status MergeYamlMap(const YAML::Node& node, const std::string& prefix,
                          ConfigSchema& schema,
                          const std::vector<std::string>& keys) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config under '", prefix, "' has a non-scalar key"));
    }
    const std::string path = prefix.empty()
                                 ? kv.first.Scalar()
                                 : absl::StrCat(prefix, ".", kv.first.Scalar());
    const YAML::Node& value = kv.second;
    const bool is_leaf =
        std::find(keys.begin(), keys.end(), path) != keys.end();
    const bool is_branch =
        std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
          return absl::StartsWith(k, path + ".");
        });
    if (!is_leaf && !is_branch) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown config key '", path, "'"));
    }
    if (is_branch) {
      if (!value.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config key '", path, "' must be a map"));
      }
      if (absl::Status s = MergeYamlMap(value, path, schema, keys); !s.ok()) {
        return s;
      }
      continue;
    }
    if (!value.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config key '", path, "': expects a single value",
          value.IsNull() ? " (it is empty)" : ""));
    }
    if (absl::Status s = schema.SetFromString(path, value.Scalar()); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ConfigSchema::LoadYamlString(absl::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config is not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();  // empty file: all defaults
  if (!root.IsMap()) {
    return absl::InvalidArgumentError("config must be a YAML map of keys");
  }
  try {
    return MergeYamlMap(root, "", *this, Keys());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config could not be read: ", e.what()));
  }
}

absl::Status ConfigSchema::LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot open config file '", path, "'"));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  absl::Status s = LoadYamlString(buf.str());
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ConfigSchema::Validate() const {
  for (const auto& e : entries_) {
    if (absl::Status s = e->validate(); !s.ok()) return KeyError(e->key, s);
  }
  return absl::OkStatus();
}

std::vector<std::string> ConfigSchema::Keys() const {
  std::vector<std::string> keys;
  keys.reserve(entries_.size());
  for (const auto& e : entries_) keys.push_back(e->key);
  return keys;
}

std::string ConfigSchema::Describe() const {
  std::string out;
  for (const auto& e : entries_) {
    absl::StrAppend(&out, e->key, " (", e->type_name, ", default '", e->get(),
                    "'): ", e->help, "\n");
  }
  return out;
}

absl::StatusOr<std::string> ConfigSchema::HelpOf(absl::string_view key) const {
  Entry* e = Find(key);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown config key '", key, "'"));
  }
  return absl::StrCat(e->help, " (", e->type_name, ")");
}

absl::StatusOr<std::string> ConfigSchema::ValueAsString(
    absl::string_view key) const {
  Entry* e = Find(key);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown config key '", key, "'"));
  }
  return e->get();
}

absl::StatusOr<CommandLineOutcome> ParseCommandLine(
    ConfigSchema& schema, int argc, const char* const* argv,
    const std::string& description, std::ostream& out) {
  CLI::App app(description);
  std::string config_path;
  bool show_version = false;
  app.add_option("-c,--config", config_path,
                 "YAML config file; command-line flags override its keys");
  app.add_flag("--version", show_version, "print the version and exit");
  // Overrides are collected in order and applied after the file.
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const std::string& key : schema.Keys()) {
    app.add_option_function<std::string>(
           "--" + key,
           [&overrides, key](const std::string& v) {
             overrides.emplace_back(key, v);
           },
           *schema.HelpOf(key))
        ->default_str(*schema.ValueAsString(key));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return CommandLineOutcome::kHelpPrinted;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("command line: ", e.what()));
  }
  if (show_version) {
    out << VersionString() << "\n";
    return CommandLineOutcome::kHelpPrinted;
  }
  if (!config_path.empty()) {
    if (absl::Status s = schema.LoadYamlFile(config_path); !s.ok()) return s;
  }
  for (const auto& [key, value] : overrides) {
    if (absl::Status s = schema.SetFromString(key, value); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("flag --", key, ": ", s.message()));
    }
  }
  if (absl::Status s = schema.Validate(); !s.ok()) return s;
  return CommandLineOutcome::kRun;
}

Validator<std::string> NonEmpty() {
  return [](const std::string& v) {
    return v.empty() ? absl::InvalidArgumentError("must not be empty")
                     : absl::OkStatus();
  };
}

Validator<std::string> ListenAddress(bool allow_empty) {
  return [allow_empty](const std::string& v) -> absl::Status {
    if (v.empty()) {
      return allow_empty ? absl::OkStatus()
                         : absl::InvalidArgumentError("must not be empty");
    }
    if (absl::StartsWith(v, "unix:")) {
      return v.size() > 5 ? absl::OkStatus()
                          : absl::InvalidArgumentError("unix: needs a path");
    }
    const size_t colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("expects host:port, got '", v, "'"));
    }
    int port = -1;
    if (!absl::SimpleAtoi(v.substr(colon + 1), &port) || port < 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("port must be 0..65535, got '", v.substr(colon + 1), "'"));
    }
    return absl::OkStatus();
  };
}

Validator<std::string> OneOf(std::vector<std::string> allowed) {
  return [allowed = std::move(allowed)](const std::string& v) -> absl::Status {
    if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "must be one of ", absl::StrJoin(allowed, ", "), "; got '", v, "'"));
  };
}

}  // namespace sparsevid::config

#include "server/front_config.h"

#include <fstream>
#include <iterator>

#include "common/request_validation.h"
#include "gtest/gtest.h"

namespace sparsevid::front {
namespace {

TEST(FrontConfig, ShippedExampleLoadsAndSetsEveryKey) {
  FrontConfig cfg;
  config::ConfigSchema schema;
  DeclareFrontConfig(schema, &cfg);
  const std::string path = std::string(SPARSEVID_SOURCE_DIR) + "/configs/front.yaml";
  ASSERT_TRUE(schema.LoadYamlFile(path).ok());
  EXPECT_TRUE(schema.Validate().ok());
  EXPECT_TRUE(ValidateModelLimits(ToEngineOptions(cfg).default_limits).ok());
  // The example documents every key.
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::string& key : schema.Keys()) {
    const std::string leaf = key.substr(key.rfind('.') + 1) + ":";
    EXPECT_NE(text.find(leaf), std::string::npos) << key;
  }
}

TEST(FrontConfig, InconsistentLimitsAreCaught) {
  FrontConfig cfg;
  config::ConfigSchema schema;
  DeclareFrontConfig(schema, &cfg);
  ASSERT_TRUE(schema.LoadYamlString("limits: {default_width: 100}").ok());
  ASSERT_TRUE(schema.Validate().ok());  // each key alone is in range
  absl::Status s = ValidateModelLimits(ToEngineOptions(cfg).default_limits);
  EXPECT_NE(s.message().find("default_width"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace sparsevid::front

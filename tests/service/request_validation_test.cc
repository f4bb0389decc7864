#include "common/request_validation.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sparsevid {
namespace {

using sparsevid::v1::GenerateRequest;
using sparsevid::v1::ModelLimits;

ModelLimits Limits() {
  ModelLimits l;
  l.set_spatial_multiple(16);
  l.set_max_width(512);
  l.set_max_height(512);
  l.set_min_frames(1);
  l.set_max_frames(33);
  l.set_frame_multiple(4);
  l.set_max_prompt_tokens(64);
  l.set_default_width(64);
  l.set_default_height(64);
  l.set_default_frames(9);
  l.set_default_fps(8);
  l.set_default_steps(4);
  l.set_default_guidance(5.0f);
  l.set_default_shift(3.0f);
  l.set_default_keep_ratio(0.25f);
  return l;
}

GenerateRequest Good() {
  GenerateRequest r;
  r.set_prompt("a red circle moving left");
  return r;
}

struct BadCase {
  const char* field;
  std::function<void(GenerateRequest*)> mutate;
};

TEST(RequestValidation, GoodRequestsPass) {
  const std::vector<std::string> models = {"tiny"};
  EXPECT_TRUE(ValidateGenerateRequest(Good(), Limits(), models).ok());
  GenerateRequest r = Good();
  r.set_request_id("abc-DEF_1.2");
  r.set_width(512);
  r.set_height(16);
  r.set_num_frames(33);
  r.set_fps(60);
  r.set_steps(200);
  r.set_guidance_scale(0.0f);
  r.set_keep_ratio(1.0f);
  r.set_priority(9);
  r.set_model("tiny");
  r.set_shift(20.0f);
  r.set_sampler(v1::SAMPLER_EULER);
  r.set_attention(v1::ATTENTION_MODE_SLA2_LOW_BIT);
  EXPECT_TRUE(ValidateGenerateRequest(r, Limits(), models).ok());
}

TEST(RequestValidation, EveryBadFieldIsNamed) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<BadCase> cases = {
      {"prompt", [](GenerateRequest* r) { r->set_prompt(""); }},
      {"prompt", [](GenerateRequest* r) { r->set_prompt("   \n\t "); }},
      {"prompt", [](GenerateRequest* r) { r->set_prompt(std::string(2001, 'a')); }},
      {"prompt", [](GenerateRequest* r) { r->set_prompt("bad \xC3\x28 utf8"); }},
      {"negative_prompt",
       [](GenerateRequest* r) { r->set_negative_prompt(std::string(3000, 'n')); }},
      {"width", [](GenerateRequest* r) { r->set_width(100); }},
      {"width", [](GenerateRequest* r) { r->set_width(-16); }},
      {"width", [](GenerateRequest* r) { r->set_width(528); }},
      {"height", [](GenerateRequest* r) { r->set_height(8); }},
      {"height", [](GenerateRequest* r) { r->set_height(4096); }},
      {"num_frames", [](GenerateRequest* r) { r->set_num_frames(8); }},
      {"num_frames", [](GenerateRequest* r) { r->set_num_frames(37); }},
      {"num_frames", [](GenerateRequest* r) { r->set_num_frames(-3); }},
      {"fps", [](GenerateRequest* r) { r->set_fps(61); }},
      {"fps", [](GenerateRequest* r) { r->set_fps(-1); }},
      {"steps", [](GenerateRequest* r) { r->set_steps(-1); }},
      {"steps", [](GenerateRequest* r) { r->set_steps(201); }},
      {"steps", [](GenerateRequest* r) { r->set_steps(1000000); }},
      {"guidance_scale", [](GenerateRequest* r) { r->set_guidance_scale(-0.5f); }},
      {"guidance_scale", [](GenerateRequest* r) { r->set_guidance_scale(31.0f); }},
      {"guidance_scale", [nan](GenerateRequest* r) { r->set_guidance_scale(nan); }},
      {"sampler",
       [](GenerateRequest* r) { r->set_sampler(static_cast<v1::Sampler>(77)); }},
      {"attention",
       [](GenerateRequest* r) { r->set_attention(static_cast<v1::AttentionMode>(9)); }},
      {"keep_ratio", [](GenerateRequest* r) { r->set_keep_ratio(0.0f); }},
      {"keep_ratio", [](GenerateRequest* r) { r->set_keep_ratio(1.5f); }},
      {"priority", [](GenerateRequest* r) { r->set_priority(10); }},
      {"priority", [](GenerateRequest* r) { r->set_priority(-1); }},
      {"model", [](GenerateRequest* r) { r->set_model("no-such-model"); }},
      {"shift", [](GenerateRequest* r) { r->set_shift(0.0f); }},
      {"shift", [](GenerateRequest* r) { r->set_shift(25.0f); }},
      {"request_id", [](GenerateRequest* r) { r->set_request_id("has space"); }},
      {"request_id", [](GenerateRequest* r) { r->set_request_id("a/b"); }},
      {"request_id",
       [](GenerateRequest* r) { r->set_request_id(std::string(129, 'x')); }},
  };
  for (const BadCase& c : cases) {
    GenerateRequest r = Good();
    c.mutate(&r);
    absl::Status s = ValidateGenerateRequest(r, Limits(), {"tiny"});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(s.message().substr(0, std::string(c.field).size() + 1),
              std::string(c.field) + ":")
        << s;
  }
}

TEST(RequestValidation, ResolveDefaultsFillsZeroFields) {
  GenerateRequest r = Good();
  r.set_steps(7);
  ResolveDefaults(Limits(), &r);
  EXPECT_EQ(r.width(), 64);
  EXPECT_EQ(r.height(), 64);
  EXPECT_EQ(r.num_frames(), 9);
  EXPECT_EQ(r.fps(), 8);
  EXPECT_EQ(r.steps(), 7);  // given, kept
  EXPECT_FLOAT_EQ(r.guidance_scale(), 5.0f);
  EXPECT_FLOAT_EQ(r.shift(), 3.0f);
  EXPECT_FLOAT_EQ(r.keep_ratio(), 0.25f);
  EXPECT_TRUE(ValidateGenerateRequest(r, Limits(), {}).ok());
}

TEST(RequestValidation, ModelLimitsSanity) {
  EXPECT_TRUE(ValidateModelLimits(Limits()).ok());
  ModelLimits l = Limits();
  l.set_spatial_multiple(0);
  EXPECT_NE(ValidateModelLimits(l).message().find("spatial_multiple"),
            absl::string_view::npos);
  l = Limits();
  l.set_default_frames(10);
  EXPECT_NE(ValidateModelLimits(l).message().find("default_frames"),
            absl::string_view::npos);
  l = Limits();
  l.set_max_frames(0);
  EXPECT_FALSE(ValidateModelLimits(l).ok());
}

}  // namespace
}  // namespace sparsevid

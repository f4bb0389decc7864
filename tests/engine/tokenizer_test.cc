// Tokenizer on the fixture's sentencepiece model: EOS, cleaning, limits.
#include "worker/engine/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/engine/fixtures/tiny_model.h"

namespace sparsevid::engine {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(::testing::TempDir()) + "/tok_" + std::to_string(::getpid()));
    ASSERT_TRUE(testing::WriteTinyModel(*dir_).ok());
    auto t = Tokenizer::Load(*dir_ + "/spiece.model");
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = t->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    std::system(("rm -rf " + *dir_).c_str());
    delete dir_;
  }
  static std::string* dir_;
  static Tokenizer* tok_;
};
std::string* TokenizerTest::dir_ = nullptr;
Tokenizer* TokenizerTest::tok_ = nullptr;

TEST_F(TokenizerTest, AppendsEosAndNoBos) {
  auto ids = tok_->Encode("a red circle", 64);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_GE(ids->size(), 2u);
  EXPECT_EQ(ids->back(), Tokenizer::kEosId);
  for (size_t i = 0; i + 1 < ids->size(); ++i) {
    EXPECT_NE((*ids)[i], Tokenizer::kEosId);
    EXPECT_NE((*ids)[i], Tokenizer::kPadId);
  }
}

TEST_F(TokenizerTest, EmptyTextIsJustEos) {
  auto ids = tok_->Encode("", 8);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::vector<int>{Tokenizer::kEosId});
}

TEST_F(TokenizerTest, WhitespaceAndHtmlCleaning) {
  EXPECT_EQ(Tokenizer::Clean("  a \t red\n\ncircle  "), "a red circle");
  EXPECT_EQ(Tokenizer::Clean("cats &amp;amp; dogs &#65;&#x42; &lt;3"), "cats & dogs AB <3");
  EXPECT_EQ(Tokenizer::Clean("fish &unknown; chips & peas"), "fish &unknown; chips & peas");
  EXPECT_EQ(*tok_->Encode("  a   red circle ", 64), *tok_->Encode("a red circle", 64));
}

TEST_F(TokenizerTest, TooLongIsAnErrorNamingTheField) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "a red circle ";
  auto ids = tok_->Encode(text, 64, "negative_prompt");
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(ids.status().message()).find("negative_prompt"), std::string::npos);
  // Exactly at the limit is fine.
  auto short_ids = tok_->Encode("a red circle", 64);
  ASSERT_TRUE(short_ids.ok());
  EXPECT_TRUE(tok_->Encode("a red circle", static_cast<int>(short_ids->size())).ok());
  EXPECT_FALSE(tok_->Encode("a red circle", static_cast<int>(short_ids->size()) - 1).ok());
}

TEST_F(TokenizerTest, UnicodeDoesNotCrash) {
  auto ids = tok_->Encode("色调艳丽，过曝 🎬 émoji", 64);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->back(), Tokenizer::kEosId);
}

TEST(TokenizerLoad, BadFilesAreErrors) {
  EXPECT_FALSE(Tokenizer::Load("/nonexistent/spiece.model").ok());
  const std::string p = std::string(::testing::TempDir()) + "/garbage.model";
  FILE* f = std::fopen(p.c_str(), "w");
  std::fputs("not a model", f);
  std::fclose(f);
  auto t = Tokenizer::Load(p);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sparsevid::engine

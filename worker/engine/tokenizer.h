// umT5 tokenizer: a sentencepiece model (spiece.model) plus the Wan
// conventions (wan2.1.md §3.2): cleaning (Clean below), EOS id 1 appended, no BOS, pad id 0. A prompt
// whose ids (with EOS) exceed the text length is an error, not a silent
// truncation. (The reference also runs ftfy; prompts that rely on its fixes
// may tokenize differently.)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/sentencepiece_bridge.h"

namespace sparsevid::engine {

class Tokenizer {
 public:
  static constexpr int kPadId = 0;
  static constexpr int kEosId = 1;

  ~Tokenizer();
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& spiece_path);

  int vocab_size() const;
  // Ids of the cleaned text followed by EOS. `max_tokens` counts the EOS;
  // `field` names the request field in the error ("prompt", "negative_prompt").
  absl::StatusOr<std::vector<int>> Encode(const std::string& text, int max_tokens,
                                          const std::string& field = "prompt") const;

  // Wan's "whitespace" cleaning minus ftfy: HTML-unescape twice, strip,
  // collapse whitespace runs. Unescaping knows the numeric references and
  // amp/lt/gt/quot/apos/nbsp (the reference's Python html.unescape knows all
  // HTML5 names; others pass through unchanged here).
  static std::string Clean(const std::string& text);
  static std::string HtmlUnescape(const std::string& text);
  static std::string CleanWhitespace(const std::string& text);

 private:
  Tokenizer();
  std::unique_ptr<SentencePieceBridge> sp_;
};

}  // namespace sparsevid::engine

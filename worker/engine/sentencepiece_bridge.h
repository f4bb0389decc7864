// Debian's sentencepiece headers declare their own `absl::string_view`,
// which clashes with the real Abseil. This bridge keeps them in one
// translation unit that includes no Abseil header; the rest of the engine
// talks to sentencepiece through plain std types.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace sparsevid::engine {

class SentencePieceBridge {
 public:
  SentencePieceBridge();
  ~SentencePieceBridge();
  // Returns an empty string on success, else the error.
  std::string Load(const std::string& model_path);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  int piece_size() const;
  int eos_id() const;
  int pad_id() const;

  // Trains a unigram model on `sentences` with the umT5 ids (pad 0, eos 1,
  // unk 2, no BOS) and writes it to model_path. Returns "" or the error.
  static std::string Train(const std::vector<std::string>& sentences, int vocab_size,
                           const std::string& model_path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsevid::engine

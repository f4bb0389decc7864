// No Abseil includes in this file (see the header).
#include "worker/engine/sentencepiece_bridge.h"

#include <fstream>

#include "sentencepiece_processor.h"
#include "sentencepiece_trainer.h"

// Exported by libsentencepiece but declared only in its private common.h:
// the trainer's INFO chatter would otherwise flood test logs.
namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int level);
}  // namespace sentencepiece::logging

namespace sparsevid::engine {

struct SentencePieceBridge::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SentencePieceBridge::SentencePieceBridge() : impl_(std::make_unique<Impl>()) {}
SentencePieceBridge::~SentencePieceBridge() = default;

std::string SentencePieceBridge::Load(const std::string& model_path) {
  const auto st = impl_->sp.Load(model_path);
  return st.ok() ? "" : st.ToString();
}

std::string SentencePieceBridge::Encode(const std::string& text, std::vector<int>* ids) const {
  const auto st = impl_->sp.Encode(text, ids);
  return st.ok() ? "" : st.ToString();
}

int SentencePieceBridge::piece_size() const { return impl_->sp.GetPieceSize(); }
int SentencePieceBridge::eos_id() const { return impl_->sp.eos_id(); }
int SentencePieceBridge::pad_id() const { return impl_->sp.pad_id(); }

namespace {

// Feeds the in-memory sentences to the trainer.
class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& s) : s_(s) {}
  bool done() const override { return i_ >= s_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return s_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& s_;
  size_t i_ = 0;
};

}  // namespace

std::string SentencePieceBridge::Train(const std::vector<std::string>& sentences, int vocab_size,
                                       const std::string& model_path) {
  VectorIterator it(sentences);
  std::string serialized;
  const std::string args =
      "--model_type=unigram --vocab_size=" + std::to_string(vocab_size) +
      " --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --hard_vocab_limit=false"
      " --character_coverage=1.0 --num_threads=1";
  const int old_level = sentencepiece::logging::GetMinLogLevel();
  sentencepiece::logging::SetMinLogLevel(2);  // errors only
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &serialized);
  sentencepiece::logging::SetMinLogLevel(old_level);
  if (!st.ok()) return st.ToString();
  std::ofstream out(model_path, std::ios::binary | std::ios::trunc);
  out.write(serialized.data(), serialized.size());
  out.close();
  return out ? "" : "cannot write " + model_path;
}

}  // namespace sparsevid::engine

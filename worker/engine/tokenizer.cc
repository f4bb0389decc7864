#include "worker/engine/tokenizer.h"

#include <cctype>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sparsevid::engine {

Tokenizer::Tokenizer() : sp_(std::make_unique<SentencePieceBridge>()) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& spiece_path) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  const std::string err = tok->sp_->Load(spiece_path);
  if (!err.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load sentencepiece tokenizer ", spiece_path, ": ", err));
  }
  if (tok->sp_->eos_id() != kEosId || tok->sp_->pad_id() != kPadId) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", spiece_path, " must use eos id ", kEosId, " and pad id ", kPadId,
        " (has eos ", tok->sp_->eos_id(), ", pad ", tok->sp_->pad_id(), ")"));
  }
  return tok;
}

int Tokenizer::vocab_size() const { return sp_->piece_size(); }

namespace {

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

std::string Tokenizer::HtmlUnescape(const std::string& text) {
  static const std::pair<const char*, uint32_t> kNamed[] = {
      {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xA0}};
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '&') {
      const size_t semi = text.find(';', i);
      if (semi != std::string::npos && semi - i <= 10) {
        const std::string ent = text.substr(i + 1, semi - i - 1);
        bool done = false;
        if (ent.size() > 1 && ent[0] == '#') {
          const bool hex = ent[1] == 'x' || ent[1] == 'X';
          const std::string digits = ent.substr(hex ? 2 : 1);
          char* end = nullptr;
          const unsigned long cp = std::strtoul(digits.c_str(), &end, hex ? 16 : 10);
          if (!digits.empty() && *end == '\0' && cp > 0 && cp <= 0x10FFFF) {
            AppendUtf8(static_cast<uint32_t>(cp), out);
            done = true;
          }
        } else {
          for (const auto& [name, cp] : kNamed) {
            if (ent == name) {
              AppendUtf8(cp, out);
              done = true;
              break;
            }
          }
        }
        if (done) {
          i = semi + 1;
          continue;
        }
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

std::string Tokenizer::Clean(const std::string& text) {
  return CleanWhitespace(HtmlUnescape(HtmlUnescape(text)));
}

std::string Tokenizer::CleanWhitespace(const std::string& text) {
  std::string out;
  bool pending_space = false;
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(static_cast<char>(c));
  }
  return out;
}

absl::StatusOr<std::vector<int>> Tokenizer::Encode(const std::string& text, int max_tokens,
                                                   const std::string& field) const {
  std::vector<int> ids;
  const std::string err = sp_->Encode(Clean(text), &ids);
  if (!err.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": cannot tokenize: ", err));
  }
  ids.push_back(kEosId);
  if (static_cast<int>(ids.size()) > max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is too long: ", ids.size(),
                                                   " tokens (with EOS), the model takes at most ",
                                                   max_tokens));
  }
  return ids;
}

}  // namespace sparsevid::engine

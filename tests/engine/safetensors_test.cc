// safetensors reader: round trip, zero-copy, and every corruption class
// giving an error that names the file (and the tensor where one is involved).
#include "worker/engine/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "worker/engine/weight_store.h"

namespace sparsevid::engine {
namespace {

using kernels::DType;
using kernels::Tensor;

class SafetensorsTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) {
    return std::string(::testing::TempDir()) + "/st_" + std::to_string(::getpid()) + "_" + name;
  }
  // Writes raw bytes: 8-byte length + header + data.
  std::string WriteRaw(const std::string& name, const std::string& header, size_t data_bytes,
                       int64_t length_override = -1) {
    const std::string p = Path(name);
    std::ofstream out(p, std::ios::binary);
    const uint64_t len = length_override >= 0 ? length_override : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
    out << header << std::string(data_bytes, '\0');
    return p;
  }
  void ExpectError(const std::string& path, const std::vector<std::string>& words) {
    auto f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok());
    const std::string msg(f.status().message());
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& w : words) EXPECT_NE(msg.find(w), std::string::npos) << w << " / " << msg;
  }
};

TEST_F(SafetensorsTest, RoundTripWithDtypesAndMetadata) {
  const Tensor a = Tensor::FromVector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::Empty({3}, DType::kBF16);
  Tensor h = Tensor::Empty({2}, DType::kF16);
  const float bv[] = {1.5f, -2.0f, 0.25f};
  for (int i = 0; i < 3; ++i) b.data<uint16_t>()[i] = kernels::FloatToBf16(bv[i]);
  h.data<uint16_t>()[0] = kernels::FloatToF16(0.5f);
  h.data<uint16_t>()[1] = kernels::FloatToF16(-3.0f);
  const std::string p = Path("ok.safetensors");
  ASSERT_TRUE(WriteSafetensors(p, {{"a", a}, {"b", b}, {"h", h}}, {{"k", "v"}}).ok());
  auto f = SafetensorsFile::Open(p);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->entries().size(), 3u);
  EXPECT_EQ((*f)->entries()[0].name, "a");
  EXPECT_EQ((*f)->metadata().at("k"), "v");
  const Tensor ra = (*f)->Get(*(*f)->Find("a"));
  EXPECT_EQ(ra.shape(), (kernels::Shape{2, 3}));
  EXPECT_EQ(ra.ToVector(), a.ToVector());
  EXPECT_EQ((*f)->GetF32(*(*f)->Find("b")).ToVector(), (std::vector<float>{1.5f, -2.0f, 0.25f}));
  EXPECT_EQ((*f)->GetF32(*(*f)->Find("h")).ToVector(), (std::vector<float>{0.5f, -3.0f}));
  EXPECT_EQ((*f)->Find("nope"), nullptr);
  // Tensors outlive the file object (they keep the mapping).
  Tensor keep = (*f)->Get(*(*f)->Find("a"));
  f->reset();
  EXPECT_EQ(keep.ToVector()[5], 6.0f);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  auto f = SafetensorsFile::Open(Path("absent"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, ShorterThanTheLengthField) {
  const std::string p = Path("tiny");
  std::ofstream(p) << "abc";
  ExpectError(p, {"truncated"});
}

TEST_F(SafetensorsTest, HeaderLengthBeyondTheFile) {
  ExpectError(WriteRaw("hlen", "{}", 0, 4096), {"truncated", "header length"});
}

TEST_F(SafetensorsTest, HugeHeaderLength) {
  ExpectError(WriteRaw("huge", "{}", 0, int64_t{1} << 40), {"implausible"});
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  ExpectError(WriteRaw("json", "{\"a\": [", 0), {"not valid JSON"});
  ExpectError(WriteRaw("arr", "[1, 2]", 0), {"not a JSON object"});
}

TEST_F(SafetensorsTest, DataOffsetsOutOfRangeNameTheTensor) {
  ExpectError(
      WriteRaw("range", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
      {"'w'", "out of range"});
}

TEST_F(SafetensorsTest, SizeNotMatchingShapeNamesTheTensor) {
  ExpectError(
      WriteRaw("size", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16),
      {"'w'", "need 12"});
}

TEST_F(SafetensorsTest, UnsupportedDtypeNamesTheTensor) {
  ExpectError(WriteRaw("dtype", R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16),
              {"'w'", "unsupported dtype F64"});
}

TEST_F(SafetensorsTest, MalformedEntries) {
  ExpectError(WriteRaw("noshape", R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"'w'"});
  ExpectError(WriteRaw("negshape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
              {"'w'", "non-negative"});
  ExpectError(WriteRaw("badoff", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4),
              {"'w'", "data_offsets"});
  ExpectError(WriteRaw("meta", R"({"__metadata__":{"a":1}})", 0), {"__metadata__"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  ExpectError(WriteRaw("overlap",
                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12),
              {"overlap"});
}

TEST_F(SafetensorsTest, TruncatedDataSection) {
  // A valid file cut short: the last tensor's range leaves the file.
  const std::string p = Path("cut.safetensors");
  ASSERT_TRUE(WriteSafetensors(p, {{"x", Tensor::Zeros({64})}}).ok());
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 10);
  ExpectError(p, {"'x'", "out of range"});
}

// The weight store on top: missing, extra, mis-shaped and wrong-dtype
// tensors name tensor and file.
TEST_F(SafetensorsTest, WeightStoreChecksDeclaredTensors) {
  const std::string p = Path("w.safetensors");
  ASSERT_TRUE(WriteSafetensors(p, {{"a", Tensor::Zeros({2, 2})}, {"b", Tensor::Zeros({3})}}).ok());
  WeightRequest req;
  req.component = WeightComponent::kT5;
  req.files = {p};
  req.required = {{"a", {2, 2}}, {"b", {3}}};
  auto ok = WeightStore::Load(req);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 2u);

  req.required = {{"a", {2, 2}}, {"b", {3}}, {"c", {1}}};
  auto missing = WeightStore::Load(req);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("'c'"), std::string::npos);
  EXPECT_NE(std::string(missing.status().message()).find(p), std::string::npos);

  req.required = {{"a", {2, 2}}};
  auto extra = WeightStore::Load(req);
  EXPECT_FALSE(extra.ok());
  EXPECT_NE(std::string(extra.status().message()).find("unexpected tensor 'b'"), std::string::npos);

  req.required = {{"a", {4}}, {"b", {3}}};
  auto shape = WeightStore::Load(req);
  EXPECT_FALSE(shape.ok());
  EXPECT_NE(std::string(shape.status().message()).find("'a'"), std::string::npos);
  EXPECT_NE(std::string(shape.status().message()).find("[2, 2]"), std::string::npos)
      << shape.status();

  const std::string pi = Path("ids.safetensors");
  Tensor ids = Tensor::Empty({3}, DType::kI32);
  ASSERT_TRUE(WriteSafetensors(pi, {{"a", Tensor::Zeros({2, 2})}, {"b", ids}}).ok());
  req.files = {pi};
  req.required = {{"a", {2, 2}}, {"b", {3}}};
  auto dtype = WeightStore::Load(req);
  EXPECT_FALSE(dtype.ok());
  EXPECT_NE(std::string(dtype.status().message()).find("dtype"), std::string::npos);
  EXPECT_NE(std::string(dtype.status().message()).find(pi), std::string::npos);

  // All-or-none groups.
  req.files = {p};
  req.required = {{"a", {2, 2}}};
  req.optional_groups = {{{"b", {3}}, {"z", {1}}}};
  auto partial = WeightStore::Load(req);
  EXPECT_FALSE(partial.ok());
  EXPECT_NE(std::string(partial.status().message()).find("'z'"), std::string::npos);
}

TEST_F(SafetensorsTest, WeightStoreRejectsTheSameTensorTwice) {
  const std::string p1 = Path("d1.safetensors"), p2 = Path("d2.safetensors");
  ASSERT_TRUE(WriteSafetensors(p1, {{"blocks.0.modulation", Tensor::Zeros({1})}}).ok());
  ASSERT_TRUE(WriteSafetensors(p2, {{"blocks.0.scale_shift_table", Tensor::Zeros({1})}}).ok());
  WeightRequest req;
  req.component = WeightComponent::kDit;
  req.files = {p1, p2};
  req.required = {{"blocks.0.modulation", {1}}};
  auto r = WeightStore::Load(req);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("appears twice"), std::string::npos);
}

}  // namespace
}  // namespace sparsevid::engine

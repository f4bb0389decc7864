// Encodes synthetic frames and checks the MP4 with ffprobe (an independent
// decoder): frame count, size, frame rate, decodability, chunk layout and
// the SHA-256 against sha256sum.
#include "worker/video/fmp4_encoder.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/command_output.h"

extern "C" {
#include <libavutil/log.h>
}

namespace sparsevid::video {
namespace {

using testing_support::CommandOutput;

std::vector<uint8_t> MovingSquare(int w, int h, int t) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3, 32);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (x >= t * 2 % w && x < t * 2 % w + w / 4 && y >= h / 4 && y < h / 2) {
        uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
        p[0] = 220;
        p[1] = 40;
        p[2] = 40;
      }
    }
  }
  return rgb;
}

struct Collected {
  std::string bytes;
  std::vector<int64_t> chunk_sizes;
  int chunks_before_finish = 0;
};

std::string WriteTemp(const std::string& bytes, const std::string& name) {
  // ctest runs the cases of this binary in parallel processes: keep paths apart.
  std::string path = absl::StrCat(testing::TempDir(), "/fmp4_", ::getpid(), "_", name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

Collected Encode(Fmp4EncoderOptions opt, int frames) {
  Collected c;
  auto enc = Fmp4Encoder::Create(opt, [&](int64_t offset, std::string_view data) {
    EXPECT_EQ(offset, static_cast<int64_t>(c.bytes.size()));
    c.bytes.append(data);
    c.chunk_sizes.push_back(static_cast<int64_t>(data.size()));
    return absl::OkStatus();
  });
  EXPECT_TRUE(enc.ok()) << enc.status();
  if (!enc.ok()) return c;
  for (int t = 0; t < frames; ++t) {
    auto rgb = MovingSquare(opt.width, opt.height, t);
    absl::Status st = (*enc)->AddFrame(rgb.data(), opt.width, opt.height);
    EXPECT_TRUE(st.ok()) << st;
  }
  c.chunks_before_finish = static_cast<int>(c.chunk_sizes.size());
  absl::Status st = (*enc)->Finish();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ((*enc)->frames(), frames);
  EXPECT_EQ((*enc)->bytes_written(), static_cast<int64_t>(c.bytes.size()));
  std::string path = WriteTemp(c.bytes, "sha.mp4");
  std::string sum = CommandOutput(absl::StrCat("sha256sum ", path));
  EXPECT_EQ(sum.substr(0, 64), (*enc)->sha256_hex());
  return c;
}

// "width,height,r_frame_rate,nb_read_frames" from ffprobe.
std::string Probe(const std::string& path) {
  std::string out = CommandOutput(absl::StrCat(
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of csv=p=0 ",
      path, " 2>&1"));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(Fmp4EncoderTest, ProducesPlayableFragmentedMp4) {
  Fmp4EncoderOptions opt;
  opt.width = 64;
  opt.height = 48;
  opt.fps = 12;
  Collected c = Encode(opt, 37);
  ASSERT_FALSE(c.bytes.empty());
  // Fragmented: ftyp, then an empty moov, then moof/mdat pairs.
  EXPECT_EQ(c.bytes.substr(4, 4), "ftyp");
  EXPECT_NE(c.bytes.find("moof"), std::string::npos);
  EXPECT_NE(c.bytes.find("mvex"), std::string::npos);
  std::string path = WriteTemp(c.bytes, "basic.mp4");
  EXPECT_EQ(Probe(path), "h264,64,48,yuv420p,12/1,37");
  // Decoding the whole file must produce no errors. -nostdin: without it
  // ffmpeg reads keyboard commands from the inherited stdin, and bytes there
  // (a CI runner's) printed "error parsing debug value" into the output.
  EXPECT_EQ(
      CommandOutput(absl::StrCat("ffmpeg -nostdin -v error -i ", path, " -f null - 2>&1")), "");
}

TEST(Fmp4EncoderTest, StreamsChunksBeforeFinishAndRespectsChunkLimit) {
  Fmp4EncoderOptions opt;
  opt.width = 128;
  opt.height = 96;
  opt.fps = 8;
  opt.keyframe_interval = 4;
  opt.crf = 0;  // large frames so fragments exceed the chunk limit
  opt.max_chunk_bytes = 4096;
  Collected c = Encode(opt, 33);
  EXPECT_GE(c.chunks_before_finish, 2) << "fragments must leave before Finish";
  for (int64_t n : c.chunk_sizes) EXPECT_LE(n, 4096);
  EXPECT_EQ(Probe(WriteTemp(c.bytes, "chunked.mp4")), "h264,128,96,yuv420p,8/1,33");
}

TEST(Fmp4EncoderTest, PadsOddSizesToEven) {
  Fmp4EncoderOptions opt;
  opt.width = 33;
  opt.height = 17;
  opt.fps = 16;
  Collected c = Encode(opt, 5);
  EXPECT_EQ(Probe(WriteTemp(c.bytes, "odd.mp4")), "h264,34,18,yuv420p,16/1,5");
}

TEST(Fmp4EncoderTest, RejectsBadOptionsNamingTheField) {
  auto sink = [](int64_t, std::string_view) { return absl::OkStatus(); };
  struct Case {
    Fmp4EncoderOptions opt;
    const char* field;
  };
  std::vector<Case> cases;
  Fmp4EncoderOptions base;
  base.width = 32;
  base.height = 32;
  Case c{base, "width"};
  c.opt.width = 0;
  cases.push_back(c);
  c = {base, "height"};
  c.opt.height = -2;
  cases.push_back(c);
  c = {base, "fps"};
  c.opt.fps = 0;
  cases.push_back(c);
  c = {base, "crf"};
  c.opt.crf = 60;
  cases.push_back(c);
  c = {base, "preset"};
  c.opt.preset = "warp-speed";
  cases.push_back(c);
  c = {base, "max_chunk_bytes"};
  c.opt.max_chunk_bytes = 10;
  cases.push_back(c);
  for (const Case& k : cases) {
    auto enc = Fmp4Encoder::Create(k.opt, sink);
    ASSERT_FALSE(enc.ok()) << k.field;
    EXPECT_EQ(enc.status().code(), absl::StatusCode::kInvalidArgument) << k.field;
    EXPECT_NE(enc.status().message().find(k.field), std::string::npos) << enc.status();
  }
}

TEST(Fmp4EncoderTest, RejectsWrongFrameSizeAndFinishWithoutFrames) {
  Fmp4EncoderOptions opt;
  opt.width = 32;
  opt.height = 32;
  auto enc = Fmp4Encoder::Create(opt, [](int64_t, std::string_view) { return absl::OkStatus(); });
  ASSERT_TRUE(enc.ok()) << enc.status();
  std::vector<uint8_t> rgb(16 * 16 * 3);
  EXPECT_EQ((*enc)->AddFrame(rgb.data(), 16, 16).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*enc)->Finish().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Fmp4EncoderTest, SinkErrorStopsEncoding) {
  Fmp4EncoderOptions opt;
  opt.width = 64;
  opt.height = 64;
  opt.keyframe_interval = 2;
  int calls = 0;
  auto enc = Fmp4Encoder::Create(opt, [&](int64_t offset, std::string_view) {
    return ++calls > 1 ? absl::CancelledError("client went away") : absl::OkStatus();
  });
  ASSERT_TRUE(enc.ok()) << enc.status();
  absl::Status st;
  for (int t = 0; t < 40 && st.ok(); ++t) {
    auto rgb = MovingSquare(64, 64, t);
    st = (*enc)->AddFrame(rgb.data(), 64, 64);
  }
  if (st.ok()) st = (*enc)->Finish();
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  EXPECT_EQ((*enc)->AddFrame(MovingSquare(64, 64, 0).data(), 64, 64).code(),
            absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace sparsevid::video

int main(int argc, char** argv) {
  av_log_set_level(AV_LOG_ERROR);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// Encodes RGB frames to H.264 in fragmented MP4 and hands the file out in
// chunks while frames arrive, so the worker can stream a video before the
// last frame is decoded. Output: yuv420p, libx264, movflags
// frag_keyframe+empty_moov+default_base_moof (playable by ffprobe and
// browsers via MSE). Not thread-safe: one encoder per job, one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sparsevid::video {

struct Fmp4EncoderOptions {
  int width = 0;   // pixels of the input frames; odd sizes are padded to even
  int height = 0;
  int fps = 16;    // 1..240, written into the stream timing
  int crf = 23;    // x264 constant rate factor, 0..51
  std::string preset = "veryfast";  // x264 preset name
  // Frames between keyframes; each keyframe starts a new MP4 fragment, so
  // this bounds how much video is held back before it is streamed.
  // 0 = one keyframe per second (fps frames).
  int keyframe_interval = 0;
  int threads = 1;  // x264 threads; 0 = libx264's choice
  int64_t max_chunk_bytes = 1 << 20;  // upper bound on one chunk, >= 4096
};

// Receives consecutive pieces of the MP4: offset is the byte position of
// data within the file. A non-OK status aborts encoding and is returned by
// the AddFrame/Finish call that produced the chunk.
using ChunkSink = std::function<absl::Status(int64_t offset, std::string_view data)>;

class Fmp4Encoder {
 public:
  // INVALID_ARGUMENT for out-of-range options (naming the field),
  // INTERNAL / UNAVAILABLE when libx264 or the MP4 muxer is missing.
  static absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Create(const Fmp4EncoderOptions& options,
                                                             ChunkSink sink);
  ~Fmp4Encoder();
  Fmp4Encoder(const Fmp4Encoder&) = delete;
  Fmp4Encoder& operator=(const Fmp4Encoder&) = delete;

  // One RGB24 frame, rows of width*3 bytes; the size must match the options.
  absl::Status AddFrame(const uint8_t* rgb, int width, int height);
  // Flushes the encoder and writes the last fragment. After Finish the
  // whole file has gone through the sink; further calls fail.
  absl::Status Finish();

  int frames() const { return frames_; }
  int64_t bytes_written() const { return bytes_written_; }
  // Lowercase hex SHA-256 of the whole file; empty until Finish succeeded.
  const std::string& sha256_hex() const { return sha256_hex_; }
  // Pixel size actually encoded (even).
  int encoded_width() const;
  int encoded_height() const;

 private:
  struct State;
  Fmp4Encoder(std::unique_ptr<State> state, ChunkSink sink);
  static int WritePacket(void* opaque, uint8_t* buf, int size);
  absl::Status EncodeAndMux(bool flush);
  absl::Status TakeSinkError();

  std::unique_ptr<State> state_;
  ChunkSink sink_;
  absl::Status sink_error_;
  int frames_ = 0;
  int64_t bytes_written_ = 0;
  bool finished_ = false;
  std::string sha256_hex_;
};

}  // namespace sparsevid::video

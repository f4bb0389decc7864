#include "worker/video/fmp4_encoder.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libavutil/sha.h>
#include <libswscale/swscale.h>
}

namespace sparsevid::video {
namespace {

// The AVIO buffer bounds what one write callback can deliver; chunks are
// further split to max_chunk_bytes.
constexpr int kAvioBufferBytes = 256 * 1024;

std::string AvError(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof(buf));
  return buf;
}

absl::Status AvStatus(int err, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", AvError(err)));
}

}  // namespace

struct Fmp4Encoder::State {
  Fmp4EncoderOptions options;
  int enc_width = 0, enc_height = 0;
  const AVCodec* codec = nullptr;
  AVCodecContext* codec_ctx = nullptr;
  AVFormatContext* format_ctx = nullptr;
  AVIOContext* avio = nullptr;
  AVStream* stream = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  SwsContext* sws = nullptr;
  AVSHA* sha = nullptr;
  std::vector<uint8_t> padded;  // RGB copy at even size when input is odd

  ~State() {
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&codec_ctx);
    if (format_ctx != nullptr) avformat_free_context(format_ctx);
    if (avio != nullptr) {
      av_freep(&avio->buffer);
      avio_context_free(&avio);
    }
    av_freep(&sha);
  }
};

absl::StatusOr<std::unique_ptr<Fmp4Encoder>> Fmp4Encoder::Create(
    const Fmp4EncoderOptions& options, ChunkSink sink) {
  if (options.width <= 0 || options.width > 8192) {
    return absl::InvalidArgumentError(absl::StrCat("width must be in 1..8192, got ", options.width));
  }
  if (options.height <= 0 || options.height > 8192) {
    return absl::InvalidArgumentError(absl::StrCat("height must be in 1..8192, got ", options.height));
  }
  if (options.fps < 1 || options.fps > 240) {
    return absl::InvalidArgumentError(absl::StrCat("fps must be in 1..240, got ", options.fps));
  }
  if (options.crf < 0 || options.crf > 51) {
    return absl::InvalidArgumentError(absl::StrCat("crf must be in 0..51, got ", options.crf));
  }
  if (options.keyframe_interval < 0) {
    return absl::InvalidArgumentError("keyframe_interval must be >= 0");
  }
  if (options.threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  if (options.max_chunk_bytes < 4096) {
    return absl::InvalidArgumentError("max_chunk_bytes must be >= 4096");
  }
  if (!sink) return absl::InvalidArgumentError("chunk sink is empty");
  // libx264 only rejects an unknown preset when the encoder opens, with a
  // message that does not name it.
  static constexpr const char* kPresets[] = {"ultrafast", "superfast", "veryfast", "faster",
                                             "fast",      "medium",    "slow",     "slower",
                                             "veryslow",  "placebo"};
  if (std::find(std::begin(kPresets), std::end(kPresets), options.preset) == std::end(kPresets)) {
    return absl::InvalidArgumentError(absl::StrCat("preset must be an x264 preset (ultrafast .. "
                                                   "placebo), got '", options.preset, "'"));
  }

  auto state = std::make_unique<State>();
  State& s = *state;
  s.options = options;
  // yuv420p subsamples chroma 2x2, so x264 needs even sizes.
  s.enc_width = options.width + (options.width & 1);
  s.enc_height = options.height + (options.height & 1);

  s.codec = avcodec_find_encoder_by_name("libx264");
  if (s.codec == nullptr) {
    return absl::UnavailableError("libavcodec was built without the libx264 encoder");
  }
  const AVOutputFormat* mp4 = av_guess_format("mp4", nullptr, nullptr);
  if (mp4 == nullptr) return absl::UnavailableError("libavformat has no mp4 muxer");

  s.codec_ctx = avcodec_alloc_context3(s.codec);
  if (s.codec_ctx == nullptr) return absl::ResourceExhaustedError("avcodec_alloc_context3 failed");
  AVCodecContext* c = s.codec_ctx;
  c->width = s.enc_width;
  c->height = s.enc_height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->time_base = AVRational{1, options.fps};
  c->framerate = AVRational{options.fps, 1};
  c->gop_size = options.keyframe_interval > 0 ? options.keyframe_interval : options.fps;
  c->thread_count = options.threads;
  // MP4 keeps SPS/PPS in the avcC box of the init segment.
  c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  av_opt_set(c->priv_data, "preset", options.preset.c_str(), 0);
  av_opt_set_int(c->priv_data, "crf", options.crf, 0);
  int err = avcodec_open2(c, s.codec, nullptr);
  if (err < 0) return AvStatus(err, "opening libx264");

  err = avformat_alloc_output_context2(&s.format_ctx, mp4, nullptr, nullptr);
  if (err < 0) return AvStatus(err, "allocating mp4 muxer");
  s.stream = avformat_new_stream(s.format_ctx, nullptr);
  if (s.stream == nullptr) return absl::ResourceExhaustedError("avformat_new_stream failed");
  s.stream->time_base = c->time_base;
  s.stream->avg_frame_rate = c->framerate;
  err = avcodec_parameters_from_context(s.stream->codecpar, c);
  if (err < 0) return AvStatus(err, "copying codec parameters");

  auto* buffer = static_cast<uint8_t*>(av_malloc(kAvioBufferBytes));
  if (buffer == nullptr) return absl::ResourceExhaustedError("av_malloc failed");
  std::unique_ptr<Fmp4Encoder> encoder(new Fmp4Encoder(std::move(state), std::move(sink)));
  State& st = *encoder->state_;
  // Not seekable: the muxer must write strictly forward, which is what
  // lets every byte leave as soon as it is produced.
  st.avio = avio_alloc_context(buffer, kAvioBufferBytes, /*write_flag=*/1, encoder.get(),
                               nullptr, &Fmp4Encoder::WritePacket, nullptr);
  if (st.avio == nullptr) {
    av_free(buffer);
    return absl::ResourceExhaustedError("avio_alloc_context failed");
  }
  st.format_ctx->pb = st.avio;
  st.format_ctx->flags |= AVFMT_FLAG_CUSTOM_IO | AVFMT_FLAG_FLUSH_PACKETS;

  st.sha = av_sha_alloc();
  if (st.sha == nullptr || av_sha_init(st.sha, 256) < 0) {
    return absl::ResourceExhaustedError("av_sha_alloc failed");
  }

  AVDictionary* mux_options = nullptr;
  av_dict_set(&mux_options, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
  err = avformat_write_header(st.format_ctx, &mux_options);
  av_dict_free(&mux_options);
  if (err < 0) {
    absl::Status sink_status = encoder->TakeSinkError();
    return sink_status.ok() ? AvStatus(err, "writing MP4 header") : sink_status;
  }

  st.frame = av_frame_alloc();
  st.packet = av_packet_alloc();
  if (st.frame == nullptr || st.packet == nullptr) {
    return absl::ResourceExhaustedError("av_frame_alloc failed");
  }
  st.frame->format = AV_PIX_FMT_YUV420P;
  st.frame->width = st.enc_width;
  st.frame->height = st.enc_height;
  err = av_frame_get_buffer(st.frame, 0);
  if (err < 0) return AvStatus(err, "allocating frame");
  st.sws = sws_getContext(st.enc_width, st.enc_height, AV_PIX_FMT_RGB24, st.enc_width,
                          st.enc_height, AV_PIX_FMT_YUV420P, SWS_BILINEAR, nullptr, nullptr,
                          nullptr);
  if (st.sws == nullptr) return absl::InternalError("sws_getContext failed");
  return encoder;
}

Fmp4Encoder::Fmp4Encoder(std::unique_ptr<State> state, ChunkSink sink)
    : state_(std::move(state)), sink_(std::move(sink)) {}

Fmp4Encoder::~Fmp4Encoder() = default;

int Fmp4Encoder::encoded_width() const { return state_->enc_width; }
int Fmp4Encoder::encoded_height() const { return state_->enc_height; }

int Fmp4Encoder::WritePacket(void* opaque, uint8_t* buf, int size) {
  auto* self = static_cast<Fmp4Encoder*>(opaque);
  if (!self->sink_error_.ok()) return AVERROR_EXTERNAL;
  av_sha_update(self->state_->sha, buf, static_cast<unsigned>(size));
  int64_t done = 0;
  while (done < size) {
    const int64_t n = std::min<int64_t>(size - done, self->state_->options.max_chunk_bytes);
    absl::Status st = self->sink_(
        self->bytes_written_,
        std::string_view(reinterpret_cast<const char*>(buf + done), static_cast<size_t>(n)));
    if (!st.ok()) {
      self->sink_error_ = std::move(st);
      return AVERROR_EXTERNAL;
    }
    self->bytes_written_ += n;
    done += n;
  }
  return size;
}

absl::Status Fmp4Encoder::TakeSinkError() {
  absl::Status st = std::move(sink_error_);
  sink_error_ = absl::OkStatus();
  // Keep failing later writes: a broken sink cannot resume mid-file.
  if (!st.ok()) sink_error_ = st;
  return st;
}

absl::Status Fmp4Encoder::AddFrame(const uint8_t* rgb, int width, int height) {
  if (finished_) return absl::FailedPreconditionError("encoder already finished");
  if (!sink_error_.ok()) return sink_error_;
  State& s = *state_;
  if (rgb == nullptr) return absl::InvalidArgumentError("frame data is null");
  if (width != s.options.width || height != s.options.height) {
    return absl::InvalidArgumentError(absl::StrFormat("frame is %dx%d, encoder expects %dx%d",
                                                      width, height, s.options.width,
                                                      s.options.height));
  }
  const uint8_t* src = rgb;
  if (s.enc_width != width || s.enc_height != height) {
    // Pad to even size by repeating the last column / row.
    s.padded.resize(static_cast<size_t>(s.enc_width) * s.enc_height * 3);
    for (int y = 0; y < s.enc_height; ++y) {
      const uint8_t* row = rgb + static_cast<size_t>(std::min(y, height - 1)) * width * 3;
      uint8_t* dst = s.padded.data() + static_cast<size_t>(y) * s.enc_width * 3;
      std::memcpy(dst, row, static_cast<size_t>(width) * 3);
      if (s.enc_width != width) std::memcpy(dst + width * 3, row + (width - 1) * 3, 3);
    }
    src = s.padded.data();
  }
  int err = av_frame_make_writable(s.frame);
  if (err < 0) return AvStatus(err, "making frame writable");
  const uint8_t* src_planes[1] = {src};
  const int src_strides[1] = {s.enc_width * 3};
  sws_scale(s.sws, src_planes, src_strides, 0, s.enc_height, s.frame->data, s.frame->linesize);
  s.frame->pts = frames_;
  err = avcodec_send_frame(s.codec_ctx, s.frame);
  if (err < 0) return AvStatus(err, "encoding frame");
  ++frames_;
  return EncodeAndMux(/*flush=*/false);
}

absl::Status Fmp4Encoder::EncodeAndMux(bool flush) {
  State& s = *state_;
  if (flush) {
    int err = avcodec_send_frame(s.codec_ctx, nullptr);
    if (err < 0 && err != AVERROR_EOF) return AvStatus(err, "flushing encoder");
  }
  while (true) {
    int err = avcodec_receive_packet(s.codec_ctx, s.packet);
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return absl::OkStatus();
    if (err < 0) return AvStatus(err, "receiving packet");
    av_packet_rescale_ts(s.packet, s.codec_ctx->time_base, s.stream->time_base);
    s.packet->stream_index = s.stream->index;
    s.packet->duration = av_rescale_q(1, s.codec_ctx->time_base, s.stream->time_base);
    err = av_interleaved_write_frame(s.format_ctx, s.packet);
    if (err < 0) {
      absl::Status sink_status = TakeSinkError();
      return sink_status.ok() ? AvStatus(err, "muxing packet") : sink_status;
    }
  }
}

absl::Status Fmp4Encoder::Finish() {
  if (finished_) return absl::FailedPreconditionError("encoder already finished");
  if (!sink_error_.ok()) return sink_error_;
  if (frames_ == 0) return absl::FailedPreconditionError("no frames were added");
  finished_ = true;
  absl::Status st = EncodeAndMux(/*flush=*/true);
  if (!st.ok()) return st;
  int err = av_write_trailer(state_->format_ctx);
  if (err < 0) {
    absl::Status sink_status = TakeSinkError();
    return sink_status.ok() ? AvStatus(err, "writing MP4 trailer") : sink_status;
  }
  avio_flush(state_->avio);
  if (!sink_error_.ok()) return sink_error_;
  uint8_t digest[32];
  av_sha_final(state_->sha, digest);
  sha256_hex_.clear();
  for (uint8_t b : digest) absl::StrAppendFormat(&sha256_hex_, "%02x", b);
  return absl::OkStatus();
}

}  // namespace sparsevid::video

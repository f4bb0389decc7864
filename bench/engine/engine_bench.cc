// engine_bench [--model DIR] [--width W --height H --frames F --steps N]
//              [--threads T] [--guidance G] [--keep-ratio K] [--repeats R]
//              [--device cpu|cuda[:N]]
// Runs whole generations and prints, per attention mode, the denoise step
// latency (median over steps; both CFG branches), the self-attention time
// and its share of the step, the mean kept fraction of key blocks, text
// encode, VAE decode and whole-generation (total_ms) times and the peak memory (backend allocations and
// process max RSS). Each mode runs R times (default 3); on a shared machine
// the minimum step time is the better estimate of the uncontended cost, the
// median shows what contention does.
// Model: --model, else models/sparsevid-shapes if present, else the tiny
// TEST FIXTURE written to a temporary directory (random weights; its sizes
// come from its model.yaml unless overridden).
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/engine/fixtures/tiny_model.h"
#include "worker/engine/pipeline.h"

using namespace sparsevid::engine;

namespace {

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long MaxRssMiB() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  GenerateParams base;
  base.prompt = "a red circle moving left on a black background";
  base.seed = 1;
  int threads = 0;
  int repeats = 3;
  std::string device = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--model") model = v;
    else if (a == "--width") base.width = std::atoi(v);
    else if (a == "--height") base.height = std::atoi(v);
    else if (a == "--frames") base.num_frames = std::atoi(v);
    else if (a == "--steps") base.steps = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--repeats") repeats = std::max(1, std::atoi(v));
    else if (a == "--guidance") base.guidance_scale = std::strtof(v, nullptr);
    else if (a == "--keep-ratio") base.keep_ratio = std::strtof(v, nullptr);
    else if (a == "--device") device = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  bool fixture = false;
  if (model.empty()) {
    const std::string shapes = std::string(SPARSEVID_SOURCE_DIR) + "/models/sparsevid-shapes";
    if (Exists(shapes + "/model.yaml")) {
      model = shapes;
    } else {
      model = "/tmp/engine_bench_fixture_" + std::to_string(::getpid());
      const auto st = sparsevid::testing::WriteTinyModel(model);
      if (!st.ok()) {
        std::fprintf(stderr, "fixture: %s\n", st.ToString().c_str());
        return 1;
      }
      fixture = true;
    }
  }
  EngineOptions opts;
  opts.threads = threads;
  opts.device = device;
  auto loaded = Pipeline::Load(model, opts);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load %s: %s\n", model.c_str(), loaded.status().ToString().c_str());
    return 1;
  }
  Pipeline& p = **loaded;
  const ModelInfo& info = p.info();
  const int w = base.width ? base.width : info.default_width;
  const int h = base.height ? base.height : info.default_height;
  const int f = base.num_frames ? base.num_frames : info.default_frames;
  const int steps = base.steps ? base.steps : info.default_steps;
  std::printf("model: %s (%s)%s\ndevice: %s\nvideo: %dx%d, %d frames, %d steps, guidance %.1f, "
              "SLA2 keep ratio %.3f\n\n",
              info.name.c_str(), model.c_str(), fixture ? " [TEST FIXTURE, random weights]" : "",
              info.device.c_str(), w, h, f, steps,
              base.guidance_scale.value_or(info.default_guidance),
              base.keep_ratio.value_or(info.default_keep_ratio));

  {
    // Warm-up: thread pool start-up and first-touch page faults are not
    // part of a step's cost in a long-running worker.
    GenerateParams warm = base;
    warm.steps = 1;
    warm.attention = AttentionMode::kDense;
    (void)p.Generate(warm, nullptr, nullptr, CancelToken());
  }
  std::printf("%-13s %9s %9s %9s %8s %8s %9s %9s %9s %9s %8s\n", "attention", "step_min",
              "step_med", "attn_min", "attn_%", "density", "text_ms", "vae_ms", "total_ms",
              "peak_MiB", "rss_MiB");
  for (auto [mode, name] : std::vector<std::pair<AttentionMode, const char*>>{
           {AttentionMode::kDense, "dense"},
           {AttentionMode::kSla2, "sla2"},
           {AttentionMode::kSla2LowBit, "sla2_low_bit"}}) {
    GenerateParams gp = base;
    gp.attention = mode;
    std::vector<double> step_s, attn_s, density, text_s, vae_s, total_s;
    absl::StatusOr<GenerateStats> stats;
    for (int r = 0; r < repeats; ++r) {
    stats = p.Generate(
        gp,
        [&](const ProgressEvent& e) {
          if (e.stage != Stage::kDenoise) return;
          step_s.push_back(e.step_seconds);
          attn_s.push_back(e.attention_seconds);
          density.push_back(e.attention_density);
        },
        nullptr, CancelToken());
    if (!stats.ok()) {
      std::fprintf(stderr, "%s: %s\n", name, stats.status().ToString().c_str());
      return 1;
    }
    text_s.push_back(stats->text_encode_seconds);
    vae_s.push_back(stats->vae_decode_seconds);
    total_s.push_back(stats->text_encode_seconds + stats->denoise_seconds +
                      stats->vae_decode_seconds);
    }
    // attention share: of the fastest step, where contention distorts least
    const size_t best = std::min_element(step_s.begin(), step_s.end()) - step_s.begin();
    const double step_min = step_s[best], attn_best = attn_s[best];
    std::printf("%-13s %9.2f %9.2f %9.2f %7.1f%% %8.3f %9.1f %9.1f %9.1f %9.1f %8ld\n", name,
                1e3 * step_min, 1e3 * Median(step_s),
                1e3 * *std::min_element(attn_s.begin(), attn_s.end()),
                step_min > 0 ? 100.0 * attn_best / step_min : 0.0, Median(density),
                1e3 * *std::min_element(text_s.begin(), text_s.end()),
                1e3 * *std::min_element(vae_s.begin(), vae_s.end()),
                1e3 * *std::min_element(total_s.begin(), total_s.end()),
                stats->peak_bytes / 1048576.0, MaxRssMiB());
  }
  if (fixture) std::system(("rm -rf " + model).c_str());
  return 0;
}

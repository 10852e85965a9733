// Data sets and the batch loader: CIFAR-10/100 binary files, image folders (stb_image), a built-in
// synthetic shapes task, and a Loader that shuffles, augments (pad-4 random crop + horizontal flip)
// and normalises on a background thread. All randomness is keyed by (seed, epoch, sample).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

struct Dataset {            // decoded once, kept in memory
  Tensor images;            // uint8, (N, 32, 32, 3) HWC as stored by CIFAR/images
  Tensor labels;            // int64, (N)
  int64_t num_classes = 0;
  std::vector<std::string> class_names;
  std::string source;       // human-readable: "CIFAR-10 binary at PATH", "image folder PATH", "synthetic (seed 1)"
  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

struct DataSplit {
  Dataset train, test;
  std::string layout;  // "cifar10-bin" | "cifar100-bin" | "image-folder" | "synthetic"
};

struct DataOptions {
  uint64_t seed = 1;             // synthetic only
  bool cifar100_coarse = false;  // CIFAR-100: the 20 coarse labels instead of the 100 fine ones
  int64_t synthetic_train = 10000, synthetic_test = 2000;
  // 0 = all; for quick runs. A limit keeps that many samples evenly spaced through the stored
  // order (so a class-sorted image folder keeps every class); synthetic sets keep the first ones.
  int64_t limit_train = 0, limit_test = 0;
};

// spec: "synthetic" or a path; the layout is detected (PATH/cifar-10-batches-bin or PATH itself
// holding data_batch_1.bin...; PATH/cifar-100-binary or PATH holding train.bin/test.bin;
// PATH/train/<class>/ image folders). Errors name the path and what was expected.
DataSplit load_data(const std::string& spec, const DataOptions& opt = {});

// The loaders behind load_data, for callers that know the layout. dir is the directory holding
// the files themselves (data_batch_1.bin..., train.bin/test.bin, train/ and test/).
DataSplit load_cifar10_binary(const std::string& dir, const DataOptions& opt = {});
DataSplit load_cifar100_binary(const std::string& dir, const DataOptions& opt = {});
DataSplit load_image_folder(const std::string& dir, const DataOptions& opt = {});
DataSplit make_synthetic(const DataOptions& opt = {});
// One synthetic set: sample i is a pure function of (seed, split, i); label i % 10.
Dataset make_synthetic_set(uint64_t seed, int64_t n, const char* split);

struct Normalization { float mean[3], std[3]; };
// CIFAR-10 means/stds (0.4914,0.4822,0.4465)/(0.2470,0.2435,0.2616); CIFAR-100
// (0.5071,0.4865,0.4409)/(0.2673,0.2564,0.2762); synthetic and image folders: computed from the
// train set (an image folder may hold anything, and JPEG-recompressed CIFAR drifts slightly).
Normalization cifar_normalization(const DataSplit& d);
Normalization compute_normalization(const Dataset& d);  // per-channel mean/std of pixels / 255

struct Batch {
  Tensor x;  // float32 (B,3,32,32), normalised
  Tensor y;  // int64 (B)
  int64_t index = 0;  // batch number within the epoch
};

struct LoaderOptions {
  int64_t batch = 128;
  bool shuffle = true, augment = true, drop_last = false;
  uint64_t seed = 1;
  Normalization norm{{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}};
  // Optional: runs on the producer thread on each finished batch (e.g. a copy to the GPU);
  // an exception it throws is rethrown by next().
  std::function<void(Batch&)> on_batch;
};

class Loader {  // prepares the next batch on a background thread while the caller trains
 public:
  Loader(const Dataset& data, const LoaderOptions& opt);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  void start_epoch(int64_t epoch);   // order and augmentation are functions of (seed, epoch, sample)
  // false at the end of the epoch. An exception from the producer (allocation, on_batch) is
  // rethrown here; calling next() again retries that batch.
  bool next(Batch& out);
  int64_t num_batches() const;
  // Skips the next n batches of the current epoch; right after start_epoch, the first n
  // (resume mid-epoch). Skipped batches are not built (one already in flight is dropped).
  void skip(int64_t n);
  // The order of the current epoch: order()[j] is the data set index of the j-th sample.
  std::vector<int64_t> order() const;

 private:
  struct State;
  void produce_loop();

  Dataset data_;
  LoaderOptions opt_;
  std::unique_ptr<State> st_;
};

}  // namespace lowbit

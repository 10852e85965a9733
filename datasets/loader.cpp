// Loader: one producer thread builds batch k+1 (gather, crop/flip, normalise) while the caller
// trains on batch k. A generation counter, bumped by start_epoch/skip/the destructor, makes the
// producer drop work that was started for a position that no longer holds.
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/rng.h"
#include "datasets/augment.h"
#include "datasets/dataset.h"

namespace lowbit {

struct Loader::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool started = false;      // start_epoch was called
  uint64_t gen = 0;          // bumped whenever the position changes
  int64_t epoch = 0;
  std::shared_ptr<const std::vector<int64_t>> order;  // snapshot the producer reads unlocked
  int64_t want = 0;          // next batch the producer should build
  int64_t consumer = 0;      // next batch next() hands out
  bool ready = false;        // `slot` (or `error`) holds batch `consumer`
  Batch slot;
  std::exception_ptr error;
  float lut[3 * 256];
  std::thread worker;
};

Loader::Loader(const Dataset& data, const LoaderOptions& opt) : data_(data), opt_(opt), st_(new State) {
  LB_CHECK(opt.batch > 0, "Loader: batch size must be positive, got ", opt.batch);
  LB_CHECK(data.images.defined() && data.labels.defined(), "Loader: data set '", data.source,
           "' has no images or labels");
  LB_CHECK(data.images.dtype() == DType::u8 && data.images.dim() == 4 && data.images.size(3) == 3,
           "Loader: images of '", data.source, "' must be uint8 (N, H, W, 3), got ",
           dtype_name(data.images.dtype()), " ", shape_str(data.images.shape()));
  LB_CHECK(data.labels.dtype() == DType::i64 && data.labels.dim() == 1 &&
               data.labels.size(0) == data.images.size(0),
           "Loader: labels of '", data.source, "' must be int64 (N) with N = ", data.images.size(0),
           ", got ", dtype_name(data.labels.dtype()), " ", shape_str(data.labels.shape()));
  LB_CHECK(data.images.device() == Device::cpu, "Loader: images must be in CPU memory");
  for (int c = 0; c < 3; ++c)
    LB_CHECK(opt.norm.std[c] > 0, "Loader: normalisation std of channel ", c, " must be positive, got ",
             opt.norm.std[c]);
  normalization_lut(opt.norm, st_->lut);
  st_->worker = std::thread([this] { produce_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    st_->stop = true;
    ++st_->gen;
  }
  st_->cv.notify_all();
  st_->worker.join();
}

int64_t Loader::num_batches() const {
  const int64_t n = data_.size(), b = opt_.batch;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> Loader::order() const {
  std::lock_guard<std::mutex> lk(st_->mu);
  return st_->order ? *st_->order : std::vector<int64_t>{};
}

void Loader::start_epoch(int64_t epoch) {
  const int64_t n = data_.size();
  auto order = std::make_shared<std::vector<int64_t>>((size_t)n);
  for (int64_t i = 0; i < n; ++i) (*order)[(size_t)i] = i;
  if (opt_.shuffle) {  // Fisher-Yates, from the end, j uniform in [0, i]
    Rng r(opt_.seed, stream_id("shuffle", (uint64_t)epoch));
    for (int64_t i = n - 1; i > 0; --i) std::swap((*order)[(size_t)i], (*order)[(size_t)r.below((uint64_t)i + 1)]);
  }
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    ++st_->gen;
    st_->started = true;
    st_->epoch = epoch;
    st_->order = std::move(order);
    st_->want = st_->consumer = 0;
    st_->ready = false;
    st_->slot = Batch();
    st_->error = nullptr;
  }
  st_->cv.notify_all();
}

void Loader::skip(int64_t n) {
  LB_CHECK(n >= 0, "Loader::skip: negative count ", n);
  {
    std::lock_guard<std::mutex> lk(st_->mu);
    LB_CHECK(st_->started, "Loader::skip: call start_epoch first");
    ++st_->gen;
    st_->consumer = std::min(st_->consumer + n, num_batches());
    st_->want = st_->consumer;
    st_->ready = false;
    st_->slot = Batch();
    st_->error = nullptr;
  }
  st_->cv.notify_all();
}

bool Loader::next(Batch& out) {
  std::unique_lock<std::mutex> lk(st_->mu);
  LB_CHECK(st_->started, "Loader::next: call start_epoch first");
  if (st_->consumer >= num_batches()) return false;
  st_->cv.wait(lk, [&] { return st_->ready; });
  st_->ready = false;
  if (st_->error) {
    // The failed batch is not consumed: calling next() again retries it.
    std::exception_ptr e = st_->error;
    st_->error = nullptr;
    st_->want = st_->consumer;
    lk.unlock();
    st_->cv.notify_all();
    std::rethrow_exception(e);
  }
  out = std::move(st_->slot);
  st_->slot = Batch();
  ++st_->consumer;
  lk.unlock();
  st_->cv.notify_all();  // the slot is free: the producer builds the next batch
  return true;
}

namespace {

Batch build_batch(const Dataset& d, const LoaderOptions& opt, const std::vector<int64_t>& order,
                  int64_t k, int64_t epoch, const float* lut) {
  const int64_t n = (int64_t)order.size(), h = d.images.size(1), w = d.images.size(2);
  const int64_t b0 = k * opt.batch, bs = std::min(opt.batch, n - b0);
  Batch out;
  out.index = k;
  out.x = Tensor::empty({bs, 3, h, w}, DType::f32);
  out.y = Tensor::empty({bs}, DType::i64);
  const uint8_t* img = d.images.data<uint8_t>();
  const int64_t* lab = d.labels.data<int64_t>();
  float* x = out.x.data<float>();
  int64_t* y = out.y.data<int64_t>();
  const int pad = 4;
  for (int64_t i = 0; i < bs; ++i) {
    const int64_t s = order[(size_t)(b0 + i)];
    CropFlip a;  // identity
    a.dx = a.dy = pad;
    if (opt.augment) a = crop_flip_for(opt.seed, epoch, s, pad);
    crop_flip_normalize(x + i * 3 * h * w, img + s * h * w * 3, h, w, a, pad, lut);
    y[i] = lab[s];
  }
  return out;
}

}  // namespace

void Loader::produce_loop() {
  State& st = *st_;
  std::unique_lock<std::mutex> lk(st.mu);
  for (;;) {
    st.cv.wait(lk, [&] { return st.stop || (st.started && !st.ready && st.want < num_batches()); });
    if (st.stop) return;
    const uint64_t gen = st.gen;
    const int64_t k = st.want, epoch = st.epoch;
    auto order = st.order;
    lk.unlock();
    Batch b;
    std::exception_ptr err;
    try {
      b = build_batch(data_, opt_, *order, k, epoch, st.lut);
      if (opt_.on_batch) opt_.on_batch(b);
    } catch (...) {
      err = std::current_exception();
    }
    lk.lock();
    if (gen != st.gen) continue;  // start_epoch/skip moved on while we worked: drop it
    st.slot = std::move(b);
    st.error = err;
    st.ready = true;
    st.want = k + 1;
    st.cv.notify_all();
  }
}

}  // namespace lowbit

// oneDNN's bf16 convolutions and matmuls as XLA FFI handlers, for `onednn.py`.
//
// XLA:CPU (jax 0.10) computes bf16 convolutions and matmuls in f32 (benchmarks/README.md
// "bf16 on a CPU"); oneDNN runs them on the CPU's bf16 instructions (avx512_bf16, AMX).
// Three handlers for each pass of a convolution layer (§3.5), images NHWC and kernels HWIO
// as the model keeps them, the same stride and padding on both spatial axes, `groups`
// towers each reading its own share of the input maps (§3.2):
//   alexnet_conv_forward          x bf16, w f32, b f32 -> y f32
//   alexnet_conv_backward_data    dy bf16, w f32 -> dx f32
//   alexnet_conv_backward_weights x bf16, dy bf16 -> dw f32, db f32
// The f32 kernel is reordered (and rounded to bf16) into oneDNN's blocked layout on each
// call; the kernel's gradient is reordered back to HWIO. And three for a fully connected
// layer, x [M, K] and w [K, N] row-major:
//   alexnet_dense_forward          x bf16, w bf16, b f32 -> y f32
//   alexnet_dense_backward_data    dy bf16, w bf16 -> dx f32
//   alexnet_dense_backward_weights x bf16, dy bf16 -> dw f32

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

// x: [N, H, W, C]; w: [KH, KW, C / groups, O] with tower-major output channels; y: [N, OH,
// OW, O]. oneDNN's logical dims are NCHW, and a grouped kernel's {G, O/G, I/G, KH, KW}.
struct Geometry {
  memory::dims src, weights, dst, strides, pad_lo, pad_hi;
  memory::dims hwio_strides;   // the model's kernel layout, in `weights`' order
  int64_t groups;

  Geometry(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w, ffi::Span<const int64_t> y,
           int64_t stride, int64_t lo, int64_t hi, int64_t g)
      : src{x[0], x[3], x[1], x[2]}, dst{y[0], y[3], y[1], y[2]}, strides{stride, stride},
        pad_lo{lo, lo}, pad_hi{hi, hi}, groups(g) {
    int64_t kh = w[0], kw = w[1], in = w[2], out = w[3];
    if (g == 1) {
      weights = {out, in, kh, kw};
      hwio_strides = {1, out, kw * in * out, in * out};
    } else {
      weights = {g, out / g, in, kh, kw};
      hwio_strides = {out / g, 1, out, kw * in * out, in * out};
    }
  }

  std::string key() const {
    std::string k;
    for (const auto* d : {&src, &weights, &dst, &strides, &pad_lo, &pad_hi})
      for (auto v : *d) k += std::to_string(v) + ",";
    return k;
  }

  memory::desc hwio(dt type) const { return memory::desc(weights, type, hwio_strides); }
  memory::desc bias() const { return memory::desc({dst[1]}, dt::f32, tag::a); }
};

// One engine for the process, and the primitive descriptors of each shape (building one
// searches oneDNN's implementations; the primitives themselves have oneDNN's own cache).
struct Primitives {
  dnnl::convolution_forward::primitive_desc forward;
  dnnl::convolution_backward_data::primitive_desc backward_data;
  dnnl::convolution_backward_weights::primitive_desc backward_weights;
};

dnnl::engine& cpu() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// bf16 inputs to each pass (images, kernels, gradients), f32 outputs (the layer's maps,
// the images' and the kernel's gradients): the products are accumulated in f32 either way.
const Primitives& primitives(const Geometry& g) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Primitives> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(g.key());
  if (found != cache.end()) return found->second;
  auto src = memory::desc(g.src, dt::bf16, tag::nhwc);
  auto dst = memory::desc(g.dst, dt::f32, tag::nhwc);
  auto diff_src = memory::desc(g.src, dt::f32, tag::nhwc);
  auto diff_dst = memory::desc(g.dst, dt::bf16, tag::nhwc);
  auto weights = memory::desc(g.weights, dt::bf16, tag::any);
  auto diff_weights = memory::desc(g.weights, dt::f32, tag::any);
  auto algorithm = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc forward(
      cpu(), dnnl::prop_kind::forward_training, algorithm, src, weights, g.bias(), dst,
      g.strides, g.pad_lo, g.pad_hi);
  dnnl::convolution_backward_data::primitive_desc backward_data(
      cpu(), algorithm, diff_src, weights, diff_dst, g.strides, g.pad_lo, g.pad_hi, forward);
  dnnl::convolution_backward_weights::primitive_desc backward_weights(
      cpu(), algorithm, src, diff_weights, g.bias(), diff_dst, g.strides, g.pad_lo, g.pad_hi,
      forward);
  return cache.emplace(g.key(), Primitives{forward, backward_data, backward_weights})
      .first->second;
}

memory wrap(const memory::desc& desc, void* data) { return memory(desc, cpu(), data); }

memory nhwc(const memory::dims& dims, dt type, void* data) {
  return wrap(memory::desc(dims, type, tag::nhwc), data);
}

// The f32 kernel in the layout and precision `want` (a new buffer).
memory kernel(const Geometry& g, const memory::desc& want, void* data, dnnl::stream& s) {
  memory user = wrap(g.hwio(dt::f32), data);
  memory blocked(want, cpu());
  dnnl::reorder(user, blocked).execute(s, user, blocked);
  return blocked;
}

template <typename F>
ffi::Error guarded(F&& body) {
  try {
    body();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  }
}

ffi::Error Forward(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> b,
                   ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pad_lo,
                   int64_t pad_hi, int64_t groups) {
  return guarded([&] {
    Geometry g(x.dimensions(), w.dimensions(), y->dimensions(), stride, pad_lo, pad_hi,
               groups);
    const auto& pd = primitives(g).forward;
    dnnl::stream s(cpu());
    memory weights = kernel(g, pd.weights_desc(), w.untyped_data(), s);
    dnnl::convolution_forward(pd).execute(
        s, {{DNNL_ARG_SRC, nhwc(g.src, dt::bf16, x.untyped_data())},
            {DNNL_ARG_WEIGHTS, weights},
            {DNNL_ARG_BIAS, wrap(g.bias(), b.untyped_data())},
            {DNNL_ARG_DST, nhwc(g.dst, dt::f32, y->untyped_data())}});
    s.wait();
  });
}

ffi::Error BackwardData(ffi::Buffer<ffi::BF16> dy, ffi::Buffer<ffi::F32> w,
                        ffi::ResultBuffer<ffi::F32> dx, int64_t stride, int64_t pad_lo,
                        int64_t pad_hi, int64_t groups) {
  return guarded([&] {
    Geometry g(dx->dimensions(), w.dimensions(), dy.dimensions(), stride, pad_lo, pad_hi,
               groups);
    const auto& pd = primitives(g).backward_data;
    dnnl::stream s(cpu());
    memory weights = kernel(g, pd.weights_desc(), w.untyped_data(), s);
    dnnl::convolution_backward_data(pd).execute(
        s, {{DNNL_ARG_DIFF_DST, nhwc(g.dst, dt::bf16, dy.untyped_data())},
            {DNNL_ARG_WEIGHTS, weights},
            {DNNL_ARG_DIFF_SRC, nhwc(g.src, dt::f32, dx->untyped_data())}});
    s.wait();
  });
}

ffi::Error BackwardWeights(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> dy,
                           ffi::ResultBuffer<ffi::F32> dw, ffi::ResultBuffer<ffi::F32> db,
                           int64_t stride, int64_t pad_lo, int64_t pad_hi, int64_t groups) {
  return guarded([&] {
    Geometry g(x.dimensions(), dw->dimensions(), dy.dimensions(), stride, pad_lo, pad_hi,
               groups);
    const auto& pd = primitives(g).backward_weights;
    dnnl::stream s(cpu());
    memory blocked(pd.diff_weights_desc(), cpu());
    dnnl::convolution_backward_weights(pd).execute(
        s, {{DNNL_ARG_SRC, nhwc(g.src, dt::bf16, x.untyped_data())},
            {DNNL_ARG_DIFF_DST, nhwc(g.dst, dt::bf16, dy.untyped_data())},
            {DNNL_ARG_DIFF_WEIGHTS, blocked},
            {DNNL_ARG_DIFF_BIAS, wrap(g.bias(), db->untyped_data())}});
    memory user = wrap(g.hwio(dt::f32), dw->untyped_data());
    dnnl::reorder(blocked, user).execute(s, blocked, user);
    s.wait();
  });
}


// The fully connected layers (§3.5): x [M, K], w [K, N] f32, y [M, N]. The backward passes
// read w and x transposed in place (strides, no copies).
memory::desc matrix(memory::dim rows, memory::dim cols, dt type, bool transposed = false) {
  return transposed ? memory::desc({rows, cols}, type, memory::dims{1, rows})
                    : memory::desc({rows, cols}, type, tag::ab);
}

// dst = src @ weights (+ bias): bf16 src and weights in the layouts given (oneDNN's brgemm
// reads plain and transposed ones as they are), f32 dst.
void matmul(const memory::desc& src_desc, void* src_data, const memory::desc& weights_desc,
            void* weights_data, void* bias_data, const memory::desc& dst_desc, void* dst_data) {
  auto bias_desc = memory::desc({1, weights_desc.get_dims()[1]}, dt::f32, tag::ab);
  auto pd = bias_data
      ? dnnl::matmul::primitive_desc(cpu(), src_desc, weights_desc, bias_desc, dst_desc)
      : dnnl::matmul::primitive_desc(cpu(), src_desc, weights_desc, dst_desc);
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, wrap(src_desc, src_data)},
                                          {DNNL_ARG_WEIGHTS, wrap(weights_desc, weights_data)},
                                          {DNNL_ARG_DST, wrap(dst_desc, dst_data)}};
  if (bias_data) args.insert({DNNL_ARG_BIAS, wrap(bias_desc, bias_data)});
  dnnl::stream s(cpu());
  dnnl::matmul(pd).execute(s, args);
  s.wait();
}

ffi::Error DenseForward(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> w,
                        ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> y) {
  return guarded([&] {
    auto m = x.dimensions()[0], k = x.dimensions()[1], n = w.dimensions()[1];
    matmul(matrix(m, k, dt::bf16), x.untyped_data(), matrix(k, n, dt::bf16), w.untyped_data(),
           b.untyped_data(), matrix(m, n, dt::f32), y->untyped_data());
  });
}

// dx [M, K] = dy [M, N] @ w^T [N, K]
ffi::Error DenseBackwardData(ffi::Buffer<ffi::BF16> dy, ffi::Buffer<ffi::BF16> w,
                             ffi::ResultBuffer<ffi::F32> dx) {
  return guarded([&] {
    auto m = dy.dimensions()[0], n = dy.dimensions()[1], k = w.dimensions()[0];
    matmul(matrix(m, n, dt::bf16), dy.untyped_data(), matrix(n, k, dt::bf16, true),
           w.untyped_data(), nullptr, matrix(m, k, dt::f32), dx->untyped_data());
  });
}

// dw [K, N] = x^T [K, M] @ dy [M, N]
ffi::Error DenseBackwardWeights(ffi::Buffer<ffi::BF16> x, ffi::Buffer<ffi::BF16> dy,
                                ffi::ResultBuffer<ffi::F32> dw) {
  return guarded([&] {
    auto m = x.dimensions()[0], k = x.dimensions()[1], n = dy.dimensions()[1];
    matmul(matrix(k, m, dt::bf16, true), x.untyped_data(), matrix(m, n, dt::bf16),
           dy.untyped_data(), nullptr, matrix(k, n, dt::f32), dw->untyped_data());
  });
}

}  // namespace

#define ATTRIBUTES                                        \
  .Attr<int64_t>("stride").Attr<int64_t>("pad_lo").Attr<int64_t>("pad_hi") \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() ATTRIBUTES);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetConvBackwardData, BackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() ATTRIBUTES);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetConvBackwardWeights, BackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() ATTRIBUTES);

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetDenseForward, DenseForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetDenseBackwardData, DenseBackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(AlexnetDenseBackwardWeights, DenseBackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

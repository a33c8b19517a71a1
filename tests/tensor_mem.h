// SPDX-License-Identifier: Apache-2.0
// Tensor memory for the suites that run on the host backend and, compiled
// again with CKPT_TEST_DEVICE_CUDA=1 (tests/cudasim), on the CUDA backend
// over the CUDA-runtime stand-in: plain host memory in the first build,
// device memory (cudaMalloc) in the second.  The stand-in maps device
// memory PROT_NONE for the host, so a test that touched a tensor's bytes
// directly would crash there: every fill, comparison and read of a
// tensor's bytes goes through TensorMem.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

#ifndef CKPT_TEST_DEVICE_CUDA
#define CKPT_TEST_DEVICE_CUDA 0
#endif
#if CKPT_TEST_DEVICE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ckt {

// Whether tensors live in (stand-in) device memory in this build.
constexpr bool kDeviceTensors = CKPT_TEST_DEVICE_CUDA != 0;

class TensorMem {
  public:
    TensorMem() = default;
    explicit TensorMem(size_t n) : n_(n)
    {
#if CKPT_TEST_DEVICE_CUDA
        cudaError_t e = cudaMalloc(&p_, n);
        if (e != cudaSuccess)
            ADD_FAILURE() << "cudaMalloc(" << n << "): " << cudaGetErrorName(e);
#else
        host_.resize(n);
        p_ = host_.data();
#endif
    }
    TensorMem(TensorMem &&o) noexcept { swap(o); }
    TensorMem &operator=(TensorMem &&o) noexcept
    {
        TensorMem t(std::move(o));
        swap(t);
        return *this;
    }
    TensorMem(const TensorMem &) = delete;
    TensorMem &operator=(const TensorMem &) = delete;
    ~TensorMem()
    {
#if CKPT_TEST_DEVICE_CUDA
        if (p_)
            (void)cudaFree(p_);
#endif
    }

    // What ckpt_register takes: a device pointer in the CUDA build.
    void *data() { return p_; }
    const void *data() const { return p_; }
    size_t size() const { return n_; }
    bool empty() const { return n_ == 0; }

    // Replaces the bytes with host bytes (size() of them).
    void write(const void *src)
    {
#if CKPT_TEST_DEVICE_CUDA
        if (n_)
            check(cudaMemcpy(p_, src, n_, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
#else
        if (n_)
            memcpy(p_, src, n_);
#endif
    }
    // A host copy of the bytes.
    std::vector<uint8_t> read() const
    {
#if CKPT_TEST_DEVICE_CUDA
        std::vector<uint8_t> h(n_);
        if (n_)
            check(cudaMemcpy(h.data(), p_, n_, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
        return h;
#else
        return host_;
#endif
    }
    // The deterministic pattern of seed (test_util.h), and whether it is there.
    void fill(uint64_t seed)
    {
        std::vector<uint8_t> h(n_);
        ckt::fill(h.data(), n_, seed);
        write(h.data());
    }
    bool matches(uint64_t seed) const
    {
        return on_host([&](const uint8_t *b) { return ckt::matches(b, n_, seed); });
    }
    // Every byte set to b, and whether every byte is b.
    void set(uint8_t b)
    {
#if CKPT_TEST_DEVICE_CUDA
        if (n_)
            check(cudaMemset(p_, b, n_), "cudaMemset");
#else
        if (n_) // an empty tensor's pointer may be NULL
            memset(p_, b, n_);
#endif
    }
    bool all(uint8_t b) const
    {
        return on_host([&](const uint8_t *p) {
            for (size_t i = 0; i < n_; i++)
                if (p[i] != b)
                    return false;
            return true;
        });
    }

  private:
    // f(the bytes as the host sees them): a copy in the CUDA build.
    template <class F> bool on_host(F f) const
    {
#if CKPT_TEST_DEVICE_CUDA
        std::vector<uint8_t> h = read();
        return f(h.data());
#else
        return f(host_.data());
#endif
    }
    void swap(TensorMem &o) noexcept
    {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
#if !CKPT_TEST_DEVICE_CUDA
        std::swap(host_, o.host_);
#endif
    }
#if CKPT_TEST_DEVICE_CUDA
    static void check(cudaError_t e, const char *what)
    {
        if (e != cudaSuccess)
            ADD_FAILURE() << what << ": " << cudaGetErrorName(e);
    }
#endif
    void *p_ = nullptr;
    size_t n_ = 0;
#if !CKPT_TEST_DEVICE_CUDA
    std::vector<uint8_t> host_;
#endif
};

} // namespace ckt

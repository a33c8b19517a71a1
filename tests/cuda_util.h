// SPDX-License-Identifier: Apache-2.0
// Whether this machine has a usable GPU, and why not, for the suites that
// pick their assertions (test_cuda.cpp) or skip (test_gpu.cpp) by it.
#pragma once

#include <string>

#if CKPT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ckt {

// Empty when a CUDA driver and device are present, else the reason.
inline std::string gpu_unavailable()
{
#if CKPT_HAVE_CUDA
    int n = 0; // left unset when there is no driver
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    if (n <= 0)
        return "no CUDA device";
    return "";
#else
    return "built without CUDA";
#endif
}

// The CUDA error name cudaGetDeviceCount reports here ("" when it succeeds).
inline std::string gpu_error_name()
{
#if CKPT_HAVE_CUDA
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    return e == cudaSuccess ? "" : cudaGetErrorName(e);
#else
    return "";
#endif
}

} // namespace ckt

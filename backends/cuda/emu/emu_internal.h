/* What the emulator's files share (not seen by kernels or the backend): running a kernel's blocks
 * (emu_exec.cpp), the error state and stream/graph bookkeeping (emu_runtime.cpp). */
#ifndef SLM_EMU_INTERNAL_H
#define SLM_EMU_INTERNAL_H

#include <stddef.h>

#include <functional>
#include <string>

#include "include/cuda_runtime.h"

namespace slm_emu {

/* Runs every block of a validated launch on this OS thread. Returns false, with a message naming the
 * kernel, when a barrier or warp collective diverged (the launch is abandoned). */
bool run_kernel(const launch_info &info, const std::function<void()> &body, std::string *msg);

/* A kernel failed: the message goes to stderr at once and stays the text of cudaErrorLaunchFailure; the
 * error is sticky like a real device fault (every later call on the device fails). */
void set_kernel_failure(const std::string &msg);

/* Host work on a stream (a cuBLAS call): run now, or recorded when the stream is capturing. Returns the
 * stream's error (sticky device fault, bad handle). */
cudaError_t enqueue_host_work(cudaStream_t s, const char *name, std::function<void()> fn);

/* True when [p, p + n) lies inside one live device allocation (what a kernel or copy may touch). */
bool device_range(const void *p, size_t n);

/* Load accounting (emu_memstats.cpp): a kernel starts, a warp met (its lanes' loads since form requests),
 * a block met or ended. No-ops unless SLM_CUDA_EMU_MEMSTATS=1. */
void memstats_begin_kernel(const launch_info &info, int n_threads);
void memstats_flush_warp(int warp, int n_threads);
void memstats_flush_block(int n_threads);

/* Reads a byte size from the environment ("12G", "512M", "4096"); def when unset. Refuses garbage loudly. */
size_t env_bytes(const char *name, size_t def);
long env_long(const char *name, long def);

} // namespace slm_emu

#endif

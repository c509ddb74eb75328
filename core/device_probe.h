/* What the planner's cost model needs to know about a device, measured by running it: the rate at which
 * its own decode mat-vec reads quantized weights, and the host link. A raw copy bandwidth says little
 * where the mat-vec is compute bound (a CPU Vulkan driver, a small CPU core). */
#ifndef SLM_DEVICE_PROBE_H
#define SLM_DEVICE_PROBE_H

#include "backend.h"

typedef struct slm_device_probe {
    double matvec_bandwidth; /* bytes of weights per second through the device's mat-vec; 0: unknown */
    double link_bandwidth;   /* host -> device upload, bytes per second; 0: unknown */
} slm_device_probe;

/* Runs a mat-vec of rows of k elements of type wtype (use the model's own: short rows cost more per byte
 * on some devices) over up to max_bytes of weights on dev (less when the first slice shows the device is
 * slow, so a probe stays well under a second). Failures leave fields 0: the caller falls back. */
slm_device_probe slm_device_probe_run(slm_device *dev, slm_dtype wtype, int64_t k, size_t max_bytes);

#endif

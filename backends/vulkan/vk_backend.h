/* Vulkan-specific surface beyond the generic device interface: device timestamps of the last split. */
#ifndef SLM_VK_BACKEND_H
#define SLM_VK_BACKEND_H

#include "backend.h"

typedef struct slm_vk_op_time {
    slm_op_kind kind;
    const char *name; /* the op's name (static string), may be NULL */
    int layer;
    double ms; /* device time from the previous op's end to this op's end */
} slm_vk_op_time;

/* Copies up to max per-op device times of the last completed split (after sync) into out; returns how
 * many (0 when the device has no timestamps or dev is not a Vulkan device). */
int slm_vk_last_timings(slm_device *dev, slm_vk_op_time *out, int max);

#endif

/* Placing a bound model on devices: opens the devices, asks the planner, uploads each device's layers,
 * and re-plans with fewer GPU layers when a device allocation fails. */
#ifndef SLM_MODEL_PLACE_H
#define SLM_MODEL_PLACE_H

#include "model.h"
#include "plan.h"

slm_status slm_model_place(slm_model *m, slm_error *err);
void slm_model_unplace(slm_model *m);
/* The planner's view of this model (layer_bytes must hold n_layer entries). */
void slm_model_plan_input(const slm_model *m, uint64_t *layer_bytes, slm_plan_model *pm);

#endif

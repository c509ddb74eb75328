/* Placing a bound model on devices: opens the devices, asks the planner, uploads each GPU's layers into the
 * placement's binding table, and re-plans with fewer GPU layers when a device allocation fails. */
#ifndef SLM_MODEL_PLACE_H
#define SLM_MODEL_PLACE_H

#include "model.h"
#include "plan.h"

slm_status slm_model_place(slm_model *m, slm_error *err);
void slm_model_unplace(slm_model *m);
/* The planner's view of this model (it points at the model's layer_bytes). */
void slm_model_plan_input(const slm_model *m, slm_plan_model *pm);

#endif

#include "diffusion/guidance.h"

#include "core/error.h"

namespace sine {

torch::Tensor classifier_free_guidance(const torch::Tensor& eps_uncond, const torch::Tensor& eps_cond, double scale) {
  if (eps_uncond.sizes() != eps_cond.sizes())
    throw Error("guidance: unconditional " + c10::str(eps_uncond.sizes()) + " and conditional " +
                c10::str(eps_cond.sizes()) + " noise predictions differ in shape");
  return eps_uncond + (eps_cond - eps_uncond) * scale;
}

}  // namespace sine

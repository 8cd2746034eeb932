#include "models/checkpointing.h"

#include "core/error.h"

namespace sine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the saved inputs; AutogradContext stores only IValues, so the
// function travels in a capsule.
struct CheckpointState : torch::CustomClassHolder {
  CheckpointedFunction fn;
  size_t num_inputs = 0;
  std::vector<torch::Tensor> params;  // the very tensors fn reads, so that grad() can target them
};

// The parameters are passed as extra inputs (after the block's inputs) so that autograd routes
// their gradients to their accumulators, which also keeps torch::autograd::grad() correct.
struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static torch::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<CheckpointState> state,
                               at::TensorList inputs_and_params) {
    std::vector<torch::Tensor> inputs(inputs_and_params.begin(), inputs_and_params.begin() + state->num_inputs);
    ctx->save_for_backward(inputs);
    torch::Tensor out;
    {
      torch::NoGradGuard no_grad;
      out = state->fn(inputs);
    }
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state = c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    auto saved = ctx->get_saved_variables();
    std::vector<torch::Tensor> inputs;
    inputs.reserve(saved.size());
    for (const auto& s : saved) inputs.push_back(s.detach().requires_grad_(s.requires_grad()));
    torch::Tensor out;
    {
      torch::AutoGradMode enable_grad(true);
      out = state->fn(inputs);
    }
    // Gradient targets, in the order of forward's tensor inputs: the block inputs, then parameters.
    const auto& params = state->params;
    std::vector<torch::Tensor> targets;
    std::vector<size_t> slots;
    const size_t total = inputs.size() + params.size();
    for (size_t i = 0; i < total; ++i) {
      torch::Tensor t = i < inputs.size() ? inputs[i] : params[i - inputs.size()];
      if (!t.requires_grad()) continue;
      targets.push_back(t);
      slots.push_back(i);
    }
    variable_list grads(1 + total);  // slot 0: the state argument, which has no gradient
    if (targets.empty() || !out.requires_grad()) return grads;
    auto computed = torch::autograd::grad({out}, targets, {grad_outputs[0]}, /*retain_graph=*/false,
                                          /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t j = 0; j < slots.size(); ++j) grads[1 + slots[j]] = computed[j];
    return grads;
  }
};

}  // namespace

torch::Tensor checkpoint(const CheckpointedFunction& fn, const std::vector<torch::Tensor>& inputs,
                         const torch::nn::Module& owner) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].defined()) throw Error("checkpoint: input " + std::to_string(i) + " is undefined");
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  state->num_inputs = inputs.size();
  for (const auto& p : owner.parameters(true))
    if (p.requires_grad()) state->params.push_back(p);
  std::vector<torch::Tensor> all = inputs;
  all.insert(all.end(), state->params.begin(), state->params.end());
  return CheckpointFunction::apply(state, at::TensorList(all));
}

}  // namespace sine

#include "server/openapi.h"

namespace sine::server {

namespace {

using json = nlohmann::json;

json ref(const std::string& schema) { return {{"$ref", "#/components/schemas/" + schema}}; }

json json_body(const json& schema) { return {{"required", true}, {"content", {{"application/json", {{"schema", schema}}}}}}; }

json response(const std::string& description, const json& schema) {
  return {{"description", description}, {"content", {{"application/json", {{"schema", schema}}}}}};
}

json errors() {
  return {{"400", response("a field is missing, of the wrong type or out of range (the field is named)", ref("Error"))},
          {"401", response("missing or wrong API key", ref("Error"))},
          {"413", response("body or image over the server's limits", ref("Error"))},
          {"429", response("the queue is full (Retry-After says when to retry)", ref("Error"))}};
}

json with_errors(json responses) {
  // items() of a temporary would outlive it in a range-for (ASan: stack-use-after-scope).
  const json common = errors();
  for (const auto& [code, r] : common.items()) responses[code] = r;
  return responses;
}

json id_parameter() {
  return json::array({{{"name", "id"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}});
}

json generation_schema(bool img2img) {
  json p = {{"prompt", {{"type", "string"}}},
            {"negative_prompt", {{"type", "string"}}},
            {"steps", {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 20}}},
            {"cfg_scale", {{"type", "number"}, {"minimum", 0}, {"maximum", 100}, {"default", 7.0}}},
            {"seed", {{"type", "integer"}, {"minimum", -1}, {"default", -1}}},
            {"sampler_name", {{"type", "string"}, {"enum", {"Euler a", "Euler", "Heun", "DPM++ 2M", "DDIM"}}}},
            {"scheduler", {{"type", "string"}, {"enum", {"Automatic", "Karras"}}}},
            {"width", {{"type", "integer"}, {"description", "multiple of 8; 0 or absent: the model's size"}}},
            {"height", {{"type", "integer"}, {"description", "multiple of 8; 0 or absent: the model's size"}}},
            {"batch_size", {{"type", "integer"}, {"minimum", 1}, {"maximum", 16}, {"default", 1}}},
            {"n_iter", {{"type", "integer"}, {"minimum", 1}, {"maximum", 16}, {"default", 1}}},
            {"eta", {{"type", "number"}, {"minimum", 0}, {"maximum", 1}}},
            {"clip_skip", {{"type", "integer"}, {"minimum", 1}, {"maximum", 12}}},
            {"override_settings", {{"type", "object"}}},
            {"send_images", {{"type", "boolean"}, {"default", true}}},
            {"save_images", {{"type", "boolean"}, {"default", false}}}};
  if (img2img) {
    p["init_images"] = {{"type", "array"}, {"items", {{"type", "string"}, {"description", "base64 PNG/JPEG"}}}};
    p["mask"] = {{"type", "string"}, {"description", "base64 image; white (or alpha) = repaint"}};
    p["mask_blur"] = {{"type", "integer"}, {"minimum", 0}, {"maximum", 64}, {"default", 4}};
    p["inpainting_fill"] = {{"type", "integer"}, {"enum", {0, 1, 2, 3}}, {"default", 1}};
    p["inpainting_mask_invert"] = {{"type", "integer"}, {"enum", {0, 1}}, {"default", 0}};
    p["denoising_strength"] = {{"type", "number"}, {"minimum", 0}, {"maximum", 1}, {"default", 0.75}};
  }
  json s = {{"type", "object"}, {"properties", p}};
  if (img2img) s["required"] = {"init_images"};
  return s;
}

}  // namespace

json openapi_document() {
  json paths;
  paths["/sdapi/v1/txt2img"]["post"] = {
      {"summary", "AUTOMATIC1111 txt2img (answers when the images are done)"},
      {"requestBody", json_body(ref("Txt2Img"))},
      {"responses", with_errors({{"200", response("images", ref("ImageResponse"))}})}};
  paths["/sdapi/v1/img2img"]["post"] = {
      {"summary", "AUTOMATIC1111 img2img; with a mask, inpainting (known region re-noised and blended each step)"},
      {"requestBody", json_body(ref("Img2Img"))},
      {"responses", with_errors({{"200", response("images", ref("ImageResponse"))}})}};
  paths["/sdapi/v1/progress"]["get"] = {
      {"summary", "progress of the running A1111 job"},
      {"parameters", json::array({{{"name", "skip_current_image"}, {"in", "query"}, {"schema", {{"type", "boolean"}}}}})},
      {"responses", {{"200", response("progress", ref("Progress"))}}}};
  paths["/sdapi/v1/interrupt"]["post"] = {{"summary", "stop the running job at its next step"},
                                          {"responses", {{"200", response("ok", {{"type", "object"}})}}}};
  paths["/sdapi/v1/skip"]["post"] = {{"summary", "as interrupt (one image per job here)"},
                                     {"responses", {{"200", response("ok", {{"type", "object"}})}}}};
  paths["/sdapi/v1/sd-models"]["get"] = {{"summary", "the loaded model"},
                                         {"responses", {{"200", response("models", {{"type", "array"}})}}}};
  paths["/sdapi/v1/samplers"]["get"] = {{"summary", "sampling methods"},
                                        {"responses", {{"200", response("samplers", {{"type", "array"}})}}}};
  paths["/sdapi/v1/schedulers"]["get"] = {{"summary", "sigma schedules"},
                                          {"responses", {{"200", response("schedulers", {{"type", "array"}})}}}};
  paths["/sdapi/v1/options"]["get"] = {{"summary", "server settings"},
                                       {"responses", {{"200", response("options", {{"type", "object"}})}}}};
  paths["/sdapi/v1/options"]["post"] = {
      {"summary", "change CLIP_stop_at_last_layers, eta_ddim (sd_model_checkpoint must name the loaded model)"},
      {"requestBody", json_body({{"type", "object"}})},
      {"responses", with_errors({{"200", response("ok", {{"nullable", true}})}})}};
  paths["/sine/v1/jobs"]["post"] = {
      {"summary", "queue a job (kind: generate, finetune, edit, insert-train, insert-generate, invert, p2p, specref); 202 at once"},
      {"requestBody", json_body(ref("JobRequest"))},
      {"responses", with_errors({{"202", response("the queued job", ref("Job"))}})}};
  paths["/sine/v1/jobs"]["get"] = {{"summary", "jobs, newest first"},
                                   {"responses", {{"200", response("jobs", {{"type", "array"}, {"items", ref("Job")}})}}}};
  paths["/sine/v1/jobs/{id}"]["get"] = {{"summary", "one job"},
                                        {"parameters", id_parameter()},
                                        {"responses", {{"200", response("job", ref("Job"))},
                                                       {"404", response("no such job", ref("Error"))}}}};
  paths["/sine/v1/jobs/{id}"]["delete"] = {
      {"summary", "cancel: a queued job at once, a running one at its next step"},
      {"parameters", id_parameter()},
      {"responses", {{"202", response("cancelling", ref("Job"))},
                     {"404", response("no such job", ref("Error"))},
                     {"409", response("already finished", ref("Error"))}}}};
  paths["/sine/v1/jobs/{id}/events"]["get"] = {
      {"summary", "Server-Sent Events: queued, running, progress {step,total,eta_seconds}, preview {image}, "
                  "then done {result} | failed {error} | cancelled"},
      {"parameters", id_parameter()},
      {"responses", {{"200", {{"description", "event stream"}, {"content", {{"text/event-stream", json::object()}}}}}}}};
  paths["/sine/v1/artifacts"]["get"] = {{"summary", "files jobs produced, newest first"},
                                        {"responses", {{"200", response("artifacts", {{"type", "array"}})}}}};
  paths["/sine/v1/artifacts/{id}"]["get"] = {
      {"summary", "download one artefact"},
      {"parameters", id_parameter()},
      {"responses", {{"200", {{"description", "the file"}}}, {"404", response("no such artifact", ref("Error"))}}}};
  paths["/sine/v1/info"]["get"] = {{"summary", "server, model and limits"},
                                   {"responses", {{"200", response("info", {{"type", "object"}})}}}};

  json schemas;
  schemas["Error"] = {{"type", "object"},
                      {"properties", {{"error", {{"type", "string"}}}, {"detail", {{"type", "string"}}},
                                      {"field", {{"type", "string"}}}}}};
  schemas["Txt2Img"] = generation_schema(false);
  schemas["Img2Img"] = generation_schema(true);
  schemas["ImageResponse"] = {
      {"type", "object"},
      {"properties", {{"images", {{"type", "array"}, {"items", {{"type", "string"}, {"description", "base64 PNG"}}}}},
                      {"parameters", {{"type", "object"}}},
                      {"info", {{"type", "string"}, {"description", "JSON text"}}}}}};
  schemas["Progress"] = {{"type", "object"},
                         {"properties", {{"progress", {{"type", "number"}}}, {"eta_relative", {{"type", "number"}}},
                                         {"state", {{"type", "object"}}}, {"current_image", {{"type", "string"}, {"nullable", true}}},
                                         {"textinfo", {{"type", "string"}, {"nullable", true}}}}}};
  schemas["JobRequest"] = {
      {"type", "object"},
      {"required", {"kind"}},
      {"properties", {{"kind", {{"type", "string"}, {"enum", {"generate", "finetune", "edit", "insert-train", "insert-generate", "invert", "p2p", "specref"}}}},
                      {"params", {{"description",
                                   "generate: the txt2img fields, or img2img's with init_images. "
                                   "finetune (SINE stage 1): image (base64), class_word, patch, steps, lr, lora_rank, optimizer_state (fp32 | bf16), "
                                   "seed, prompt_template; result.finetune is the artefact id. "
                                   "edit (SINE model-based guidance): finetune (artefact id), prompt, desc, K, v, "
                                   "cfg_scale, steps, width, height, seed, mode (sine | no-guidance | pretrained). "
                                   "insert-train (SingleInsert): image, mask, class_word, objective, stage1_steps, "
                                   "stage2_steps, batch, stage1_lr, stage2_lr, lora_rank, semantic_loss, seed. "
                                   "insert-generate: concepts (artefact ids), scales, prompt, negative_prompt, steps, "
                                   "cfg_scale, seed, width, height. "
                                   "invert (DDIM + null-text inversion): image, prompt, steps, schedule, cfg_scale, "
                                   "null_text, inner_steps, early_stop; result.inversion is the artefact id. "
                                   "p2p (Prompt-to-Prompt on a real image): image, prompt, target, inversion "
                                   "(artefact id), steps, cfg_scale, edit, cross_replace, self_replace, reweight, "
                                   "cross_replace_words, local_blend, blend_words, blend_threshold, blend_start, path, "
                                   "null_text, inner_steps. specref: source, reference, ref_mask, prompt, "
                                   "target, words, reference_prompt, steps, cfg_scale, masks, sr_start, sr_end, "
                                   "threshold, edit, cross_replace, self_replace, local_blend, blend_words, "
                                   "blend_threshold, blend_start"},
                                  {"type", "object"}}},
                      {"save_images", {{"type", "boolean"}, {"default", true}}}}}};
  schemas["Job"] = {
      {"type", "object"},
      {"properties", {{"id", {{"type", "string"}}},
                      {"kind", {{"type", "string"}}},
                      {"state", {{"type", "string"}, {"enum", {"queued", "running", "done", "failed", "cancelled"}}}},
                      {"queue_position", {{"type", "integer"}}},
                      {"progress", {{"type", "object"}}},
                      {"error", {{"type", "string"}}},
                      {"result", {{"type", "object"}}},
                      {"events_url", {{"type", "string"}}}}}};

  return {{"openapi", "3.0.3"},
          {"info", {{"title", "sine serve"},
                    {"version", SINE_VERSION},
                    {"description", "AUTOMATIC1111-compatible routes (/sdapi/v1) and sine's job API (/sine/v1)"}}},
          {"components",
           {{"schemas", schemas},
            {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
                                 {"query_key", {{"type", "apiKey"}, {"in", "query"}, {"name", "key"}}}}}}},
          {"security", json::array({{{"bearer", json::array()}}, {{"query_key", json::array()}}, json::object()})},
          {"paths", paths}};
}

}  // namespace sine::server

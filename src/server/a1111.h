#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "pipeline/pipeline.h"
#include "server/image_codec.h"
#include "server/jobs.h"

// AUTOMATIC1111's /sdapi/v1 request and response bodies (modules/api/models.py), mapped onto the
// engine's GenerateOptions: same field names, same defaults where the engine has the feature.
namespace sine::server {

// Defaults the server applies where a request leaves a field out (A1111's /sdapi/v1/options).
struct ServerSettings {
  int64_t clip_skip = 1;  // CLIP_stop_at_last_layers
  double eta_ddim = 0.0;
};

// One txt2img/img2img request: the options of the first image; the batch runs seeds
// seed, seed+1, ... (A1111's all_seeds).
struct GenerationRequest {
  GenerateOptions options;
  int64_t batch_size = 1, n_iter = 1;
  bool send_images = true, save_images = false;
  bool img2img = false;
  nlohmann::json parameters;  // the request as understood, defaults filled (the response's "parameters")
  int64_t images() const { return batch_size * n_iter; }
};

// Throws HttpError 400 naming the field for a wrong type or range, 413 for an image over the
// limits. `img2img` requires init_images (and reads mask, mask_blur, inpainting_fill,
// inpainting_mask_invert, denoising_strength).
// `prefix` names where the fields sit in errors ("params" for a generate job: "params.steps").
GenerationRequest parse_generation_request(const nlohmann::json& body, bool img2img, const ServerSettings& settings,
                                           const ImageLimits& limits, const std::string& prefix = "");

// Runs a request on the job's worker thread: progress per step (stage "image i/n"), a preview
// every few steps, each image encoded as a PNG with A1111's "parameters" text (and saved as an
// artefact when save_images). Returns {"seeds": [...], "infotexts": [...], "width", "height"}.
nlohmann::json run_generation(Pipeline& pipeline, JobContext& job, const GenerationRequest& request);

// The response of /sdapi/v1/txt2img and img2img: {"images", "parameters", "info"} (info a JSON string).
nlohmann::json a1111_response(const GenerationRequest& request, const std::vector<std::string>& png_images,
                              const nlohmann::json& result, const Pipeline& pipeline);

nlohmann::json a1111_samplers();    // /sdapi/v1/samplers
nlohmann::json a1111_schedulers();  // /sdapi/v1/schedulers
// /sdapi/v1/sd-models: the one loaded model; title "NAME [HASH]" as A1111's checkpoint titles.
nlohmann::json a1111_models(const Pipeline& pipeline);
std::string a1111_model_title(const Pipeline& pipeline);

// A cheap preview of scaled latents [1,4,h,w] as uint8 [H,W,3]: the VAE decode for small images,
// else a linear map of the four latent channels to RGB (SD 1.x's latent colour factors) at latent size.
torch::Tensor preview_image(Pipeline& pipeline, const torch::Tensor& latents);

}  // namespace sine::server

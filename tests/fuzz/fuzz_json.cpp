// libFuzzer: the JSON the project reads from users — `--model-config` / sidecar config overrides
// (strict field and type checks, applied to a config) and server request bodies read through
// `Fields` (types, ranges, nested objects) — and A1111 parameters text.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/checkpoint_config.h"
#include "io/generation_parameters.h"
#include "server/request_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto overrides = sine::ConfigOverrides::parse_text(text, "fuzz.json");
    sine::ModelConfig config;
    overrides.apply_to(config);
  } catch (const sine::Error&) {
  }
  try {
    auto body = sine::server::parse_json_object(text);
    sine::server::Fields f(body, "params");
    f.string("prompt");
    f.integer("steps", 20, 1, 1000);
    f.number("cfg_scale", 7.5, 0, 100);
    f.boolean("local_blend", false);
    f.strings("words");
    f.object("override_settings");
  } catch (const sine::Error&) {
  }
  sine::GenerationParameters::parse(text);
  return 0;
}

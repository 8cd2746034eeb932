#pragma once
#include <string>

#include "models/config.h"

namespace sine {

// Named configurations: "sd15" (Stable Diffusion 1.5), "tiny" (the reference fixtures' random
// tiny model with the SD 1.5 topology), "shapes" (the bundled shapes-world model).
ModelConfig model_config_preset(const std::string& name);
const char* model_config_preset_names();

}  // namespace sine

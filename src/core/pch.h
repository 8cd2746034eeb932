#pragma once
// Precompiled once (sine_pch) and reused by every target: LibTorch's headers dominate build time.
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <optional>
#include <functional>

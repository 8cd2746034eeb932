#pragma once
#include <nlohmann/json.hpp>

namespace sine::server {

// The OpenAPI 3 description of every route `sine serve` answers (GET /sine/v1/openapi.json).
nlohmann::json openapi_document();

}  // namespace sine::server

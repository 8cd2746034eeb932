#pragma once
#include <cstddef>
#include <vector>

// The web page's files (src/server/page/), embedded into the binary at build time by
// cmake/embed_files.cmake: no build step, no framework, no CDN.
namespace sine::server {

struct PageAsset {
  const char* path;        // "/index.html", "/app.js", "/style.css"
  const char* media_type;  // "text/html; charset=utf-8", ...
  const unsigned char* data;
  size_t size;
};

const std::vector<PageAsset>& page_assets();

}  // namespace sine::server

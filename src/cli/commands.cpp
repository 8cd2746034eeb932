#include "cli/commands.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "core/error.h"
#include "core/runtime.h"

namespace sine {

int cli_main(int argc, char** argv) {
  CLI::App app{"sine: single-image editing with Stable Diffusion 1.x (SINE, SingleInsert, SpecRef)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SINE_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace sine

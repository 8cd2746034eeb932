#include "cli/commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>

#include "cli/cli_common.h"
#include "core/device.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/runtime.h"

namespace sine {

namespace {
std::vector<std::pair<CLI::App*, std::function<void()>>>& registry() {
  static std::vector<std::pair<CLI::App*, std::function<void()>>> commands;
  return commands;
}
// How an option is written in messages: "-W/--width".
std::string flag_names(const CLI::Option& opt) {
  std::string names;
  for (const auto& s : opt.get_snames()) names += "-" + s + "/";
  for (const auto& l : opt.get_lnames()) names += "--" + l + "/";
  if (!names.empty()) names.pop_back();
  return names;
}

// The library's config checks name their field ("cfg_scale: must be ..."); on the command line
// the same message names the flag the field binds to ("--cfg-scale: must be ...").
std::string with_flag_names(const CLI::App& app, const std::string& message) {
  const auto colon = message.find(": ");
  if (colon == std::string::npos || colon == 0) return message;
  const std::string field = message.substr(0, colon);
  if (field.find_first_not_of("abcdefghijklmnopqrstuvwxyzK_0123456789") != std::string::npos) return message;
  // Fields whose flag is not the field's name with dashes (tried when that name is not a flag of
  // the command: `insert train` has --prompt-template, `finetune` --template).
  static const std::map<std::string, std::string> kFlagOf{{"class_word", "class"},
                                                          {"prompt_template", "template"},
                                                          {"grid_interpolation", "grid-interp"},
                                                          {"edit_words", "words"},
                                                          {"mask_mode", "masks"},
                                                          {"init_latents", "init-noise"},
                                                          {"queue_capacity", "queue"},
                                                          {"data_dir", "data"},
                                                          {"betas", "beta"},
                                                          {"ks", "model-K"}};
  const CLI::App* cmd = &app;
  for (bool deeper = true; deeper;) {
    deeper = false;
    for (const CLI::App* sub : cmd->get_subcommands())
      if (sub->parsed()) {
        cmd = sub;
        deeper = true;
        break;
      }
  }
  std::string dashed = field;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  const CLI::Option* opt = cmd->get_option_no_throw("--" + dashed);
  if (const auto alias = kFlagOf.find(field); !opt && alias != kFlagOf.end())
    opt = cmd->get_option_no_throw("--" + alias->second);
  return opt ? flag_names(*opt) + message.substr(colon) : message;
}

// Every floating-point flag of the parsed commands must be a finite number: CLI11 reads "nan" and
// "inf" as doubles, and a NaN passes every range check written as `x < lo || x > hi`.
void check_finite_flags(const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_type_name() != "FLOAT" || opt->count() == 0) continue;
    for (const auto& text : opt->results()) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end != text.c_str() && !std::isfinite(v)) throw Error(flag_names(*opt) + ": must be a finite number (got " + text + ")");
    }
  }
  for (const CLI::App* sub : app.get_subcommands())
    if (sub->parsed()) check_finite_flags(*sub);
}

}  // namespace

void on_run(CLI::App* cmd, std::function<void()> run) { registry().emplace_back(cmd, std::move(run)); }

int cli_main(int argc, char** argv) {
  CLI::App app{"sine: edit a single real image with Stable Diffusion 1.x (SINE, SingleInsert, SpecRef)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return version_report(); }, "sine, LibTorch and CUDA versions, devices found");
  int threads = 0;
  bool quiet = false;
  app.add_option("--threads", threads, "CPU threads (default: all cores)");
  app.add_flag("-q,--quiet", quiet, "no progress bars");
  register_generate(app);
  register_info(app);
  register_init_random(app);
  register_bench(app);
  register_inspect(app);
  register_world(app);
  register_world_train(app);
  register_sine(app);
  register_specref(app);
  register_insert(app);
  register_serve(app);
  try {
    app.parse(argc, argv);
    check_finite_flags(app);
    init_allocator();
    init_threads(threads);
    set_progress_enabled(!quiet);
    for (auto& [cmd, run] : registry())
      if (cmd->parsed()) run();
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "sine: error: " << e.what() << "\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "sine: error: " << with_flag_names(app, e.what()) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "sine: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "sine: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace sine

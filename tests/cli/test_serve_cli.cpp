// `sine serve` as a process: it prints the port it took, answers over HTTP, stops cleanly on
// SIGTERM (exit 0), and refuses a non-loopback host without an API key before loading anything.
#include <gtest/gtest.h>

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "cli_test_util.h"

namespace sine::cli_test {
namespace {

TEST(ServeCli, ServesThenStopsOnSigterm) {
  Scratch s("sine_serve_cli");
  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    close(out_pipe[0]);
    const std::string data = s.path("data");
    execl(SINE_BINARY, SINE_BINARY, "-q", "--threads", "1", "serve", "-m", kTinyFile.c_str(), "--model-config",
          kTinyConfig.c_str(), "--tokenizer", kVocab.c_str(), "--port", "0", "--data", data.c_str(), nullptr);
    _exit(127);
  }
  close(out_pipe[1]);
  FILE* out = fdopen(out_pipe[0], "r");
  char line[256] = {0};
  ASSERT_NE(std::fgets(line, sizeof line, out), nullptr);
  int port = 0;
  ASSERT_EQ(std::sscanf(line, "listening %d", &port), 1) << line;
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/sdapi/v1/sd-models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body)[0]["model_name"], "tiny_sd15_original");
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  std::fclose(out);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of stopping";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(ServeCli, NonLoopbackHostWithoutKeyIsRefused) {
  Scratch s("sine_serve_cli_host");
  auto r = s.sine("serve -m /nonexistent.safetensors --host 0.0.0.0 --port 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--api-key"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("nonexistent"), std::string::npos) << "refused before loading the model: " << r.err;
}

}  // namespace
}  // namespace sine::cli_test

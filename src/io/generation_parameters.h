#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

// What an image was made with, in the "parameters" text that AUTOMATIC1111 writes into its PNGs
// and that A1111's PNG Info, stable-diffusion.cpp and ComfyUI read back:
//
//   a red circle on a blue background
//   Negative prompt: blurry
//   Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x512,
//   Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 1, SINE K: 400, SINE v: 0.7
//
// (the last line is one line). A value holding ',', ':' or a newline is written as a JSON string,
// as A1111's generation_parameters_copypaste.quote does.
namespace sine {

struct GenerationParameters {
  std::string prompt;
  std::string negative_prompt;
  // "Key: value" pairs in the order they are written (A1111's order first, then method fields).
  std::vector<std::pair<std::string, std::string>> fields;

  // Sets `key` (replacing an earlier value in place, else appending).
  GenerationParameters& set(const std::string& key, const std::string& value);
  GenerationParameters& set(const std::string& key, double value);  // shortest round-trip text
  GenerationParameters& set(const std::string& key, int64_t value);
  GenerationParameters& set(const std::string& key, int value) { return set(key, static_cast<int64_t>(value)); }
  // The value of `key`, or "" when absent.
  std::string get(const std::string& key) const;
  bool has(const std::string& key) const;

  // The A1111 "parameters" text.
  std::string format() const;
  // A1111's parse_generation_parameters: the last line holding at least three "Key: value" pairs
  // is the fields line; the lines before it are the prompt, up to a line starting
  // "Negative prompt:", which begins the negative prompt. Quoted values are unquoted.
  static GenerationParameters parse(const std::string& text);

  // PNG text chunks: "parameters" (the A1111 text) and "sine" (the same as a JSON object with
  // "prompt", "negative_prompt" and every field, for programs that would rather read JSON).
  std::map<std::string, std::string> png_text() const;
};

// A1111's quote(): the value as is, or as a JSON string when it holds ',', ':' or a newline.
std::string quote_parameter(const std::string& value);

}  // namespace sine

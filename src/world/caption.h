#pragma once
#include <string>

#include "world/scene.h"

// Captions of shapes-world scenes in plain English, and their inverse.
//
// Convention (the text-to-image model learns it, so the generator never deviates):
//   caption    := object-list " on " article background " background"
//   object     := article ["small "] color [" striped" | " dotted"] " " shape " " position
//   background := color | color " to " color " gradient" | "checkered " color
// Large size and plain pattern are the defaults and are never written; "small", "striped" and
// "dotted" always are. The position is always written: "at the top left", "at the top",
// "at the top right", "on the left", "in the center", "on the right", "at the bottom left",
// "at the bottom", "at the bottom right". Objects are joined by ", " and a final " and ".
// A gradient is named top color first. Example:
//   "a small red striped star at the top left and a blue circle in the center on a yellow background"
namespace sine::world {

std::string caption(const Scene& scene);

// Reads every caption `caption` writes, and looser edit prompts such as "a red star on a blue
// background": adjectives in any order, "big" for large, "centre"/"middle", "upper"/"lower",
// "corner"/"side", "solid"/"plain" backgrounds, "checkerboard". An unstated position gives
// grid_cell -1 and an unstated background background_stated = false (the judge then doesn't
// check them); an unstated size or pattern means large and plain, as in generated captions.
// Unknown words, objects without color or shape, and contradictions throw sine::Error.
Scene parse_caption(const std::string& text);

}  // namespace sine::world

#!/usr/bin/env bash
# make demo: txt2img with the bundled shapes-world model on a few captions, each image checked by
# the pixel judge, shown side by side with the caption's exact rendering in demo-out/index.html.
# Usage: scripts/demo.sh [path/to/sine]   (env: SINE_MODEL to use another model, SINE_DEMO_OUT,
# SINE_DEMO_STEPS)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/build/sine}"
MODEL="${SINE_MODEL:-$ROOT/models/shapes-v3.safetensors}"
OUT="${SINE_DEMO_OUT:-demo-out}"
STEPS="${SINE_DEMO_STEPS:-20}"
CFG=5

if [[ ! -x "$BIN" ]]; then
  echo "demo: $BIN is not an executable; build first (make build) or pass the sine binary" >&2
  exit 1
fi
if [[ ! -e "$MODEL" ]]; then
  echo "demo: the shapes-world model $MODEL does not exist yet." >&2
  echo "      Train it with:" >&2
  echo "      $BIN world train --work-dir models/work --output models/shapes-v3.safetensors" >&2
  echo "      or point SINE_MODEL at a model file." >&2
  exit 1
fi

CAPTIONS=(
  "a red circle in the center on a white background"
  "a blue square on the left and a yellow star on the right on a black background"
  "a small green triangle at the top left on a purple background"
  "an orange striped heart in the center on a blue background"
  "a pink dotted ring at the bottom right on a gray to white gradient background"
  "a white cross at the top and a small red circle at the bottom on a green background"
)

start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT/scenes"

echo "== rendering source scenes (what the model was trained on)"
"$BIN" -q world render --count 4 --seed 1 -W 128 -H 128 -o "$OUT/scenes" > "$OUT/scenes/list.txt"
cat "$OUT/scenes/list.txt"

html_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

rows=""
passed=0
for i in "${!CAPTIONS[@]}"; do
  caption="${CAPTIONS[$i]}"
  echo "== [$((i + 1))/${#CAPTIONS[@]}] $caption"
  "$BIN" -q world render --caption "$caption" -o "$OUT/truth_$i.png" > /dev/null
  "$BIN" -q generate -m "$MODEL" -p "$caption" --steps "$STEPS" --cfg-scale "$CFG" -s "$((100 + i))" \
    -o "$OUT/gen_$i.png" > /dev/null
  if "$BIN" -q world judge "$OUT/gen_$i.png" --expect "$caption" > "$OUT/gen_$i.judge.txt"; then
    verdict="PASS"
    passed=$((passed + 1))
  else
    verdict="FAIL"
  fi
  echo "   judge: $verdict"
  report="$(html_escape < "$OUT/gen_$i.judge.txt")"
  rows+="<tr><td class=cap>$(printf '%s' "$caption" | html_escape)</td>"
  rows+="<td><img src=\"truth_$i.png\"></td><td><img src=\"gen_$i.png\"></td>"
  rows+="<td class=\"$verdict\"><b>$verdict</b><pre>$report</pre></td></tr>"$'\n'
done

scenes=""
while IFS=$'\t' read -r file caption; do
  scenes+="<figure><img src=\"scenes/$(basename "$file")\"><figcaption>$(printf '%s' "$caption" | html_escape)</figcaption></figure>"
done < "$OUT/scenes/list.txt"

# Each method adds its part: scripts/demo_<name>.sh BIN MODEL DIR writes its outputs under DIR
# (= $OUT/<name>) and DIR/section.html, an HTML fragment whose links are relative to $OUT.
sections=""
for part in "$ROOT"/scripts/demo_*.sh; do
  [[ -e "$part" ]] || continue
  name="$(basename "$part" .sh)"
  name="${name#demo_}"
  mkdir -p "$OUT/$name"
  echo "== $name"
  "$part" "$BIN" "$MODEL" "$OUT/$name"
  sections+="$(cat "$OUT/$name/section.html")"$'\n'
done

elapsed=$(($(date +%s) - start))
cat > "$OUT/index.html" <<HTML
<!doctype html>
<html><head><meta charset="utf-8"><title>sine demo: shapes world</title>
<style>
body { font-family: sans-serif; margin: 2em; }
img { width: 192px; image-rendering: pixelated; border: 1px solid #ccc; }
td { vertical-align: top; padding: 6px; } td.cap { max-width: 18em; }
td.PASS b { color: #080; } td.FAIL b { color: #b00; }
pre { font-size: 11px; max-width: 40em; white-space: pre-wrap; }
figure { display: inline-block; margin: 4px; width: 200px; font-size: 12px; }
</style></head><body>
<h1>sine demo: text to image in the shapes world</h1>
<p>Model: <code>$(printf '%s' "$MODEL" | html_escape)</code>, DDIM $STEPS steps, CFG $CFG, ${elapsed} s on this machine.
Judge verdicts: <b>$passed / ${#CAPTIONS[@]}</b> images show every claim of their caption.</p>
<table><tr><th>caption</th><th>the caption rendered exactly</th><th>generated</th><th>judge (from pixels)</th></tr>
$rows</table>
<h2>Source scenes (random draws of the training distribution)</h2>
$scenes
$sections
</body></html>
HTML

echo "== $passed / ${#CAPTIONS[@]} generated images pass the judge (${elapsed} s)"
echo "== open $OUT/index.html"

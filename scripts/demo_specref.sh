#!/usr/bin/env bash
# SpecRef part of `make demo`: invert a rendered scene (DDIM + null-text), a Prompt-to-Prompt word
# swap, then SpecRef with a rendered reference and its exact mask, the mask ablations and M_s
# derived from the reference's own cross-attention.
# Usage: scripts/demo_specref.sh BIN MODEL DIR  (env: SINE_DEMO_SPECREF_STEPS DDIM steps)
set -euo pipefail

BIN="$1"
MODEL="$2"
DIR="$3"
STEPS="${SINE_DEMO_SPECREF_STEPS:-20}"
NAME="$(basename "$DIR")"
# The tiny model gains nothing from threads, and on a shared 2-core box they spin against each other
# (20x slower measured); override with SINE_THREADS.
export SINE_THREADS="${SINE_THREADS:-1}"
mkdir -p "$DIR"
start=$(date +%s)
html_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

SOURCE="a red circle in the center on a white background"
TARGET="a blue star in the center on a white background"
REFERENCE="a blue star in the center on a yellow background"
"$BIN" -q world render --caption "$SOURCE" -o "$DIR/source.png" > /dev/null
"$BIN" -q world render --caption "$REFERENCE" --masks -o "$DIR/reference.png" > /dev/null
"$BIN" -q world render --caption "$TARGET" -o "$DIR/target.png" > /dev/null
REFMASK="$DIR/reference_mask0.png"
[[ -e "$REFMASK" ]] || REFMASK="$(ls "$DIR"/reference*mask*.png | head -1)"

echo "   inversion ($STEPS steps, null-text)"
"$BIN" -q invert -m "$MODEL" "$DIR/source.png" -p "$SOURCE" --steps "$STEPS" --null-text \
  -o "$DIR/inversion.safetensors" --recon "$DIR/recon.png" > "$DIR/invert.txt"
grep -v '^/' "$DIR/invert.txt" > "$DIR/invert_summary.txt" || true
sed 's/^/     /' "$DIR/invert_summary.txt"

echo "   prompt-to-prompt word swap"
"$BIN" -q p2p -m "$MODEL" "$DIR/source.png" -p "$SOURCE" --target "$TARGET" --steps "$STEPS" \
  --inversion "$DIR/inversion.safetensors" --path latents --blend -o "$DIR/p2p.png" > /dev/null

verdict() { if "$BIN" -q world judge "$1" --expect "$TARGET" > /dev/null; then echo PASS; else echo FAIL; fi; }
cells=""
for masks in both ms mt none; do
  echo "   specref, masks: $masks"
  "$BIN" -q specref -m "$MODEL" "$DIR/source.png" "$DIR/reference.png" -p "$SOURCE" --target "$TARGET" \
    --words blue,star --ref-mask "$REFMASK" --masks "$masks" --steps "$STEPS" --sr-start $((STEPS * 4 / 50)) \
    --sr-end "$STEPS" -o "$DIR/specref_$masks.png" > "$DIR/specref_$masks.txt"
  cells+="<td><img src=\"$NAME/specref_$masks.png\"><br>masks $masks: <b>$(verdict "$DIR/specref_$masks.png")</b></td>"
done
echo "   specref, M_s derived from cross-attention"
"$BIN" -q specref -m "$MODEL" "$DIR/source.png" "$DIR/reference.png" -p "$SOURCE" --target "$TARGET" \
  --words blue,star --ref-prompt "$REFERENCE" --steps "$STEPS" --sr-start $((STEPS * 4 / 50)) --sr-end "$STEPS" \
  -o "$DIR/specref_derived.png" > "$DIR/specref_derived.txt"
cells+="<td><img src=\"$NAME/specref_derived.png\"><br>derived M_s: <b>$(verdict "$DIR/specref_derived.png")</b></td>"
cache="$(grep -h 'K/V cache' "$DIR/specref_both.txt" | html_escape)"
timing="$(grep -h 'inversion' "$DIR/specref_both.txt" | html_escape)"
elapsed=$(($(date +%s) - start))

cat > "$DIR/section.html" <<HTML
<h2>SpecRef + Prompt-to-Prompt + DDIM/null-text inversion</h2>
<p>Source: $(printf '%s' "$SOURCE" | html_escape); target prompt: $(printf '%s' "$TARGET" | html_escape);
reference: $(printf '%s' "$REFERENCE" | html_escape) (rendered, with its exact mask as M_s). $STEPS DDIM steps,
CFG 7.5, SR-attention from step $((STEPS * 4 / 50)) on the decoder self-attention at the two highest
resolutions. Verdicts from the pixel judge against the target prompt. Total ${elapsed} s.
</p>
<pre>$(html_escape < "$DIR/invert_summary.txt")
$cache
$timing</pre>
<table><tr><th>source</th><th>reference</th><th>target (rendered)</th><th>inversion recon (null-text)</th><th>P2P word swap</th></tr>
<tr><td><img src="$NAME/source.png"></td><td><img src="$NAME/reference.png"></td><td><img src="$NAME/target.png"></td>
<td><img src="$NAME/recon.png"></td><td><img src="$NAME/p2p.png"><br><b>$(verdict "$DIR/p2p.png")</b></td></tr></table>
<table><tr>$cells</tr></table>
<p>Grid (source, reference, reconstruction, result, M_s, M_t, LocalBlend mask):<br>
<img style="width:auto" src="$NAME/specref_both_grid.png"><br>
<img style="width:auto" src="$NAME/specref_derived_grid.png"></p>
HTML
echo "   specref demo: ${elapsed} s"

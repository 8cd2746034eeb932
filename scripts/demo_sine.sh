#!/usr/bin/env bash
# SINE part of `make demo`: fine-tune the bundled model briefly on one rendered scene (patch mode,
# positional grid), then edit it with model-based guidance, show the ablations and a K sweep.
# Usage: scripts/demo_sine.sh BIN MODEL DIR  (env: SINE_DEMO_SINE_STEPS fine-tuning steps,
# SINE_DEMO_SINE_EDIT_STEPS DDIM steps)
set -euo pipefail

BIN="$1"
MODEL="$2"
DIR="$3"
STEPS="${SINE_DEMO_SINE_STEPS:-60}"
EDIT_STEPS="${SINE_DEMO_SINE_EDIT_STEPS:-20}"
CFG=5
NAME="$(basename "$DIR")"
mkdir -p "$DIR"
start=$(date +%s)

SOURCE="a red circle on the left and a small blue square on the right on a yellow background"
"$BIN" -q --threads 1 world render --caption "$SOURCE" -o "$DIR/source.png" > /dev/null

echo "   fine-tuning ($STEPS patch steps)"
"$BIN" -q --threads 1 finetune -m "$MODEL" -i "$DIR/source.png" --class picture --patch --steps "$STEPS" --fresh \
  -o "$DIR/sine_patch.safetensors" > /dev/null
ft_time=$(($(date +%s) - start))

EDITS=(
  "a red circle on the left and a small blue square on the right on a green background"
  "a purple circle on the left and a small blue square on the right on a yellow background"
)
html_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
rows=""
for i in "${!EDITS[@]}"; do
  edit="${EDITS[$i]}"
  echo "   edit $((i + 1))/${#EDITS[@]}: $edit"
  cells=""
  for mode in sine no-guidance pretrained; do
    "$BIN" -q --threads 1 edit -m "$MODEL" --finetuned "$DIR/sine_patch.safetensors" -p "$edit" --mode "$mode" \
      --steps "$EDIT_STEPS" --cfg-scale "$CFG" -s "$((10 + i))" -o "$DIR/edit_${i}_$mode.png" > /dev/null
    if "$BIN" -q --threads 1 world judge "$DIR/edit_${i}_$mode.png" --expect "$edit" > /dev/null; then v=PASS; else v=FAIL; fi
    cells+="<td><img src=\"$NAME/edit_${i}_$mode.png\"><br>$mode: <b>$v</b></td>"
  done
  "$BIN" -q --threads 1 world render --caption "$edit" -o "$DIR/target_$i.png" > /dev/null
  rows+="<tr><td class=cap>$(printf '%s' "$edit" | html_escape)</td><td><img src=\"$NAME/target_$i.png\"></td>$cells</tr>"$'\n'
done

echo "   K sweep and 2x width"
"$BIN" -q --threads 1 edit -m "$MODEL" --finetuned "$DIR/sine_patch.safetensors" -p "${EDITS[0]}" --steps "$EDIT_STEPS" \
  --cfg-scale "$CFG" -s 10 --sweep K=200,400,600,800 -o "$DIR/sweep_K.png" > /dev/null
"$BIN" -q --threads 1 edit -m "$MODEL" --finetuned "$DIR/sine_patch.safetensors" -p "$SOURCE" --mode no-guidance -W 128 \
  --steps "$EDIT_STEPS" --cfg-scale "$CFG" -s 3 -o "$DIR/wide.png" > /dev/null
rm -f "$DIR/sine_patch.safetensors.ckpt" "$DIR/sine_patch.safetensors.ckpt.json"
elapsed=$(($(date +%s) - start))

cat > "$DIR/section.html" <<HTML
<h2>SINE: single-image fine-tuning + model-based guidance</h2>
<p>Fine-tuned the bundled model on one rendered scene for $STEPS patch-mode steps (random crops with the
positional grid; ${ft_time} s), then edited with SINE (pre-trained model with the edit prompt guided by the
fine-tuned model with "photo of a sks picture", K 400, v 0.7, $EDIT_STEPS DDIM steps, s $CFG), the no-guidance
ablation (fine-tuned model alone with the edit prompt) and the pre-trained model alone. Verdicts from the
pixel judge against the edit caption. Total ${elapsed} s.</p>
<p><img src="$NAME/source.png"> source: $(printf '%s' "$SOURCE" | html_escape)</p>
<table><tr><th>edit prompt</th><th>target (rendered)</th><th>SINE</th><th>no guidance</th><th>pre-trained</th></tr>
$rows</table>
<p>K sweep (guidance while t &ge; K) on the first edit:<br><img style="width:auto" src="$NAME/sweep_K.png"></p>
<p>Fine-tuned model alone at 2&times; width (grid stretched): <img style="width:384px" src="$NAME/wide.png"></p>
HTML
echo "   sine demo: ${elapsed} s"

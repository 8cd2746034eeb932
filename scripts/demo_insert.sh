#!/usr/bin/env bash
# SingleInsert part of `make demo`: learn a concept (a pink dotted heart) from one rendered image
# with its exact mask (stage I encoder + stage II LoRA), insert it into new prompts, judge them,
# compose it with a second concept, show the cross-attention mask and export the files.
# Usage: scripts/demo_insert.sh BIN MODEL DIR  (env: SINE_DEMO_INSERT_STEPS steps per stage,
# SINE_DEMO_INSERT_SAMPLE_STEPS DDIM steps, SINE_DEMO_INSERT_THREADS CPU threads)
set -euo pipefail

BIN="$1"
MODEL="$2"
DIR="$3"
STEPS="${SINE_DEMO_INSERT_STEPS:-20}"
SAMPLE_STEPS="${SINE_DEMO_INSERT_SAMPLE_STEPS:-15}"
THREADS="${SINE_DEMO_INSERT_THREADS:-1}"  # the tiny model is overhead-bound: one thread is as fast and never oversubscribes
CFG=5
NAME="$(basename "$DIR")"
mkdir -p "$DIR"
start=$(date +%s)
html_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

SOURCE="a pink dotted heart in the center on a checkered green background"
SOURCE2="an orange striped star in the center on a blue to yellow gradient background"
"$BIN" -q world render --caption "$SOURCE" --masks -o "$DIR/source.png" > /dev/null
"$BIN" -q world render --caption "$SOURCE2" --masks -o "$DIR/source2.png" > /dev/null

echo "   learning the heart ($STEPS + $STEPS steps, batch 2)"
t0=$(date +%s)
"$BIN" -q --threads "$THREADS" insert train -m "$MODEL" -i "$DIR/source.png" --mask "$DIR/source_mask0.png" --class heart \
  --stage1-steps "$STEPS" --stage2-steps "$STEPS" --batch 2 -o "$DIR/heart.safetensors" > /dev/null 2> "$DIR/train.log"
train_time=$(($(date +%s) - t0))
echo "   learning the star"
"$BIN" -q --threads "$THREADS" insert train -m "$MODEL" -i "$DIR/source2.png" --mask "$DIR/source2_mask0.png" --class star \
  --stage1-steps "$STEPS" --stage2-steps "$STEPS" --batch 2 -o "$DIR/star.safetensors" > /dev/null 2>> "$DIR/train.log"

PROMPTS=(
  "a * heart in the center on a white background"
  "a * heart on the left and a blue circle on the right on a white background"
  "a small * heart at the top right on a gray background"
)
rows=""
for i in "${!PROMPTS[@]}"; do
  p="${PROMPTS[$i]}"
  expect="${p//\*/pink dotted}"
  "$BIN" -q --threads "$THREADS" insert generate -m "$MODEL" -c "$DIR/heart.safetensors" -p "$p" --steps "$SAMPLE_STEPS" \
    --cfg-scale "$CFG" -s "$((20 + i))" -o "$DIR/gen_$i.png" > /dev/null
  if "$BIN" -q world judge "$DIR/gen_$i.png" --expect "$expect" > /dev/null; then v=PASS; else v=FAIL; fi
  "$BIN" -q world render --caption "$expect" -o "$DIR/target_$i.png" > /dev/null
  rows+="<tr><td class=cap>$(printf '%s' "$p" | html_escape)</td><td><img src=\"$NAME/target_$i.png\"></td><td><img src=\"$NAME/gen_$i.png\"><br><b>$v</b></td></tr>"$'\n'
done

echo "   composition and automatic mask"
PAIR="a *1 heart on the left and a *2 star on the right on a white background"
"$BIN" -q --threads "$THREADS" insert generate -m "$MODEL" -c "$DIR/heart.safetensors" -c "$DIR/star.safetensors" -p "$PAIR" \
  --steps "$SAMPLE_STEPS" --cfg-scale "$CFG" -s 30 -o "$DIR/pair.png" > /dev/null 2>&1
if "$BIN" -q world judge "$DIR/pair.png" \
  --expect "a pink dotted heart on the left and an orange striped star on the right on a white background" > /dev/null; then
  pv=PASS; else pv=FAIL; fi
# 0 + 0 steps: only the cross-attention mask of "heart" is computed (written as auto.mask.png).
"$BIN" -q --threads "$THREADS" insert train -m "$MODEL" -i "$DIR/source.png" --class heart --stage1-steps 0 --stage2-steps 0 \
  -o "$DIR/auto.safetensors" > /dev/null 2>&1
"$BIN" -q --threads "$THREADS" insert export -m "$MODEL" -c "$DIR/heart.safetensors" --embedding "$DIR/heart_embedding.safetensors" \
  --lora "$DIR/heart_lora_kohya.safetensors" --lora-format kohya > /dev/null
elapsed=$(($(date +%s) - start))

cat > "$DIR/section.html" <<HTML
<h2>SingleInsert: a concept from one image</h2>
<p>Learned a pink dotted heart from one rendered image and its exact mask: stage I trains the image encoder
whose output replaces the token <code>*</code> in "* heart" (L_fg + L_bg), stage II adds rank-4 LoRA on the
UNet and text attention (+ L_sm); $STEPS + $STEPS steps, batch 2, ${train_time} s on this CPU. Then
generated with DDIM $SAMPLE_STEPS, CFG $CFG, and judged against the prompt with "*" read as "pink dotted".
Total ${elapsed} s. The runs are short (the concept's color is not learned in 20 steps), so expect weak results.</p>
<p><img src="$NAME/source.png"> source <img src="$NAME/source_mask0.png"> mask
<img src="$NAME/auto.mask.png"> automatic mask (cross-attention of "heart")</p>
<table><tr><th>prompt</th><th>target (rendered)</th><th>SingleInsert</th></tr>
$rows</table>
<p>Two concepts (tokens *1, *2, LoRA deltas summed): $(printf '%s' "$PAIR" | html_escape)<br>
<img src="$NAME/source2.png"> second source &rarr; <img src="$NAME/pair.png"> <b>$pv</b></p>
<p>Exports: <code>heart_embedding.safetensors</code> (A1111/ComfyUI emb_params),
<code>heart_lora_kohya.safetensors</code> (kohya keys).</p>
HTML
echo "   insert demo: ${elapsed} s"

#!/usr/bin/env python3
"""Mixed-precision training on the bundled shapes model: one whole-image SINE fine-tune per precision
setting (sine finetune), compared with the fp32 run. Prints a Markdown table (docs/performance.md):
the mean loss of the last 50 steps, how many trained tensors changed, and how far each run's weight
change (the fp16 deltas the output stores) is from the fp32 run's, relative to the fp32 change.

  scripts/bench-mixed-precision.py [--sine build/sine] [--steps 200] [--lr 1e-4] [--threads 1]

Reads safetensors with the standard library alone (struct + array), so any python3 runs it."""
import argparse, array, json, math, os, struct, subprocess, sys, tempfile


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = data[lo:hi]
        if info["dtype"] == "F16":
            out[key] = [struct.unpack("<e", raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        elif info["dtype"] == "F64":
            out[key] = list(array.array("d", raw))
        elif info["dtype"] == "F32":
            out[key] = list(array.array("f", raw))
    return out, header.get("__metadata__", {})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sine", default="build/sine")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sine-mixed-")
    img = os.path.join(work, "src.png")
    subprocess.run([a.sine, "-q", "world", "render", "--caption", "a red circle on a blue background", "-o", img],
                   check=True, stdout=subprocess.DEVNULL)
    runs = [("fp32", "fp32", []), ("bf16", "fp32", []), ("bf16", "bf16", []),
            ("bf16", "fp32", ["--no-master-weights"]), ("bf16", "bf16", ["--no-master-weights"])]
    results = []
    for dtype, state, extra in runs:
        out = os.path.join(work, f"ft_{dtype}_{state}_{len(extra)}.safetensors")
        subprocess.run([a.sine, "-q", "--threads", str(a.threads), "finetune", "--dtype", dtype, "--optimizer-state", state,
                        *extra, "-i", img, "--class", "circle", "--steps", str(a.steps), "--lr", str(a.lr),
                        "--checkpoint-every", "0", "-o", out], check=True, stdout=subprocess.DEVNULL)
        deltas, _ = read_safetensors(out)
        ckpt, _ = read_safetensors(out + ".ckpt")
        losses = ckpt["trainer.loss_history"]
        results.append((dtype, state, bool(extra), deltas, sum(losses[-50:]) / len(losses[-50:])))
    ref = results[0][3]
    ref_norm = math.sqrt(sum(v * v for t in ref.values() for v in t))
    print(f"shapes model, whole-image SINE fine-tune, {a.steps} steps, lr {a.lr}, {len(ref)} of the trained "
          f"tensors changed in fp32\n")
    print("| weights | master weights | AdamW moments | mean loss, last 50 steps | tensors changed | "
          "‖Δ − Δ_fp32‖ / ‖Δ_fp32‖ |")
    print("|---|---|---|---:|---:|---:|")
    for dtype, state, direct, deltas, loss in results:
        diff = 0.0
        for key in set(ref) | set(deltas):
            x, y = deltas.get(key), ref.get(key)
            n = len(x if x is not None else y)
            x = x or [0.0] * n
            y = y or [0.0] * n
            diff += sum((p - q) ** 2 for p, q in zip(x, y))
        masters = "—" if dtype == "fp32" else ("no (direct)" if direct else "fp32")
        print(f"| {dtype} | {masters} | {state} | {loss:.4f} | {len(deltas)} | {math.sqrt(diff) / ref_norm:.3f} |")


if __name__ == "__main__":
    sys.exit(main())

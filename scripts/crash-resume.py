#!/usr/bin/python3
"""Crash-safe training: every trainer killed with SIGKILL at random moments resumes and ends with
exactly the tensors of an uninterrupted run.

For each trainer (a SINE fine-tune, SingleInsert stage I + II, the shapes-world trainer) the same
command runs once without interruption, then again from scratch while it is killed with SIGKILL at
random moments and rerun each time (as a user would, after a crash) until it finishes. The final
files must hold bit-identical tensors. Also checked: no temp file is left, and every checkpoint on
disk between kills opens (a write cut half-way never replaces the previous one).

    scripts/crash-resume.py --sine build/sine [--kills 20] [--seed 0] [--work DIR]
Exit 0 when every trainer resumes bit-identically; prints one line per trainer.
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time


def tensors(path):
    """name -> raw bytes of a .safetensors file (metadata ignored)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    return {k: (v["dtype"], tuple(v["shape"]), body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def opens(path):
    try:
        tensors(path)
        return True
    except Exception:
        return False


def run_to_end(cmd, cwd, kills, rng, max_delay, checkpoints):
    """Runs cmd in cwd; kills it `kills` times at random moments (0.3 s to max_delay after each
    start), rerunning each time, then lets it finish."""
    done_kills, attempts = 0, 0
    while True:
        attempts += 1
        if attempts > kills + 20:
            raise RuntimeError("did not finish after %d attempts" % attempts)
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done_kills < kills:
            try:
                p.wait(timeout=rng.uniform(0.3, max_delay))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                done_kills += 1
                for c in checkpoints:  # whatever is on disk after a kill must open
                    full = os.path.join(cwd, c)
                    if os.path.exists(full) and full.endswith(".safetensors") and not opens(full):
                        raise RuntimeError("a kill left a corrupt checkpoint: " + c)
                continue
        else:
            p.wait()
        if p.returncode != 0:
            raise RuntimeError("exit %d: %s" % (p.returncode, p.stderr.read().decode()[-400:]))
        return done_kills


def scenario(name, sine, work, args, output, checkpoints, kills, rng, max_delay, setup):
    ref_dir, crash_dir = os.path.join(work, name + "-ref"), os.path.join(work, name + "-crash")
    for d in (ref_dir, crash_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        setup(d)
    cmd = [sine, "-q", "--threads", "1"] + args
    t0 = time.time()
    subprocess.run(cmd, cwd=ref_dir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref_seconds = time.time() - t0
    # Spread the kills over the run: each restart gets on average ~0.75 × its share of the time.
    done = run_to_end(cmd, crash_dir, kills, rng, max(max_delay, 1.0 + 1.5 * ref_seconds / max(kills, 1)), checkpoints)
    a, b = tensors(os.path.join(ref_dir, output)), tensors(os.path.join(crash_dir, output))
    same = a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    leftovers = [f for f in os.listdir(crash_dir) if f.endswith(".tmp")]
    ok = same and not leftovers
    print("%-22s %2d kills  uninterrupted %5.1f s  %s%s" % (name, done, ref_seconds,
          "bit-identical" if same else "DIFFERENT", (" temp files left: %s" % leftovers) if leftovers else ""))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sine", required=True)
    ap.add_argument("--kills", type=int, default=20, help="kills per trainer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    sine = os.path.abspath(a.sine)
    work = a.work or tempfile.mkdtemp(prefix="sine-crash-")
    rng = random.Random(a.seed)

    def with_image(d):
        subprocess.run([sine, "-q", "world", "render", "--caption", "a red circle in the center on a white background",
                        "-o", os.path.join(d, "src.png")], check=True, stdout=subprocess.DEVNULL)

    ok = True
    ok &= scenario("sine finetune", sine, work,
                   ["finetune", "-i", "src.png", "--class", "circle", "--steps", "40", "--checkpoint-every", "1",
                    "-o", "ft.safetensors"], "ft.safetensors", ["ft.safetensors.ckpt"], a.kills, rng, 1.5, with_image)
    ok &= scenario("singleinsert I+II", sine, work,
                   ["insert", "train", "-i", "src.png", "--class", "circle", "--stage1-steps", "20", "--stage2-steps",
                    "20", "--checkpoint-every", "1", "--checkpoint-dir", "ckpt", "-o", "concept.safetensors"],
                   "concept.safetensors", ["ckpt/stage1.ckpt", "ckpt/stage2.ckpt"], a.kills, rng, 1.5, with_image)
    ok &= scenario("world train", sine, work,
                   ["world", "train", "--captions", "200", "--vae-steps", "10", "--vae-batch", "2", "--steps", "10",
                    "--batch", "2", "--warmup", "2", "--checkpoint-every", "1", "--work-dir", "w",
                    "-o", "world.safetensors"], "world.safetensors", [], a.kills, rng, 1.5, lambda d: None)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

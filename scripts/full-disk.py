#!/usr/bin/python3
"""A full disk (ENOSPC) gives one clear error line, a non-zero exit and leaves earlier files intact.

Mounts a small tmpfs (needs root; exit 77 = skipped where mounting is not allowed), fills it, and:
  1. `sine generate -o FULL/out.png` with an earlier out.png there: the old file keeps its bytes,
     no temp file is left;
  2. `sine finetune -o FULL/ft.safetensors` over an earlier fine-tune: the checkpoint or final write
     fails, the earlier fine-tune keeps its bytes, no temp file is left.

    scripts/full-disk.py --sine build/sine
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fill(folder, leave_bytes):
    """Fills the filesystem of `folder` until about `leave_bytes` remain."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(folder, "filler"), "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def expect_clean_failure(name, cmd, folder, kept):
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    ok = r.returncode != 0 and len(lines) == 1
    for path, before in kept.items():
        ok &= os.path.exists(path) and digest(path) == before
    leftovers = [f for f in os.listdir(folder) if ".tmp" in f]
    ok &= not leftovers
    print("%-10s exit %d  %s%s  %s" % (name, r.returncode, lines[-1] if lines else "(no message)",
                                       ("  temp files left: %s" % leftovers) if leftovers else "",
                                       "ok" if ok else "FAILED"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sine", required=True)
    a = ap.parse_args()
    sine = os.path.abspath(a.sine)
    work = tempfile.mkdtemp(prefix="sine-full-disk-")
    full = os.path.join(work, "full")
    os.makedirs(full)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40M", "tmpfs", full], capture_output=True).returncode != 0:
        print("full-disk: cannot mount a tmpfs here (not root?): skipped")
        shutil.rmtree(work)
        sys.exit(77)
    ok = True
    try:
        base = [sine, "-q", "--threads", "1"]
        src = os.path.join(work, "src.png")
        subprocess.run(base + ["world", "render", "--caption", "a red circle in the center on a white background",
                               "-o", src], check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(full, "out.png")
        subprocess.run(base + ["generate", "-p", "a red circle", "--steps", "2", "-o", out], check=True,
                       stdout=subprocess.DEVNULL)
        ft = os.path.join(full, "ft.safetensors")
        subprocess.run(base + ["finetune", "-i", src, "--class", "circle", "--steps", "2", "--checkpoint-every", "0",
                               "-o", ft], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for f in os.listdir(full):  # keep only the finished files
            if f.endswith(".ckpt") or f.endswith(".ckpt.json"):
                os.remove(os.path.join(full, f))
        kept = {out: digest(out), ft: digest(ft)}
        fill(full, 2048)
        ok &= expect_clean_failure("generate", base + ["generate", "-p", "a blue star", "--steps", "2", "-o", out],
                                   full, kept)
        ok &= expect_clean_failure("finetune", base + ["finetune", "-i", src, "--class", "circle", "--steps", "3",
                                                       "--checkpoint-every", "1", "--fresh", "-o", ft], full, kept)
    finally:
        subprocess.run(["umount", full])
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

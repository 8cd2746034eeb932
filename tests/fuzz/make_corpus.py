#!/usr/bin/python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/) from real files: a micro SD 1.x
checkpoint written by `sine init-random`, renders of the shapes world in every format the image
reader takes, PNGs with A1111 parameters, prompts, and the JSON the project reads. Run once after a
change to a format; the outputs are committed.

    /usr/bin/python3 tests/fuzz/make_corpus.py --sine build/sine   (Debian's python3-pil)
"""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, bytes), in order."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sine", required=True)
    args = ap.parse_args()
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    tmp = tempfile.mkdtemp()

    # safetensors: small valid files and the edge cases the loader must refuse
    write("safetensors", "two_tensors", safetensors({"a": ("F32", [2, 2], b"\0" * 16), "b": ("BF16", [3], b"\1" * 6)},
                                                      {"format": "pt"}))
    write("safetensors", "scalar_and_empty", safetensors({"s": ("I64", [], b"\0" * 8), "e": ("F16", [0, 4], b"")}))
    write("safetensors", "all_dtypes", safetensors({d: (d, [1], b"\0" * n) for d, n in
                                                    [("F64", 8), ("F32", 4), ("F16", 2), ("BF16", 2), ("I64", 8),
                                                     ("I32", 4), ("I16", 2), ("I8", 1), ("U8", 1), ("BOOL", 1)]}))
    write("safetensors", "overlap", struct.pack("<Q", 96) + json.dumps(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode().ljust(96) + b"\0" * 8)
    write("safetensors", "huge_dims", safetensors({"a": ("F32", [2**62, 4], b"")}))
    write("safetensors", "short", b"\x10\0\0\0")

    # checkpoint: a micro SD 1.x model (every key of an SD 1.5 file) in both dtypes
    for dtype in ["fp16", "fp32"]:
        path = os.path.join(tmp, f"micro-{dtype}.safetensors")
        subprocess.run([args.sine, "init-random", "--config", "micro", "--dtype", dtype, "-o", path], check=True,
                       stdout=subprocess.DEVNULL)
        write("checkpoint", f"micro_{dtype}", open(path, "rb").read())

    # image: shapes-world renders in every format stb_image reads, with and without alpha, a PNG
    # with A1111 parameters, a JPEG with an EXIF orientation
    png = os.path.join(tmp, "scene.png")
    subprocess.run([args.sine, "world", "render", "--caption", "a red striped star on the left on a blue background",
                    "-o", png, "-W", "32", "-H", "32"], check=True, stdout=subprocess.DEVNULL)
    img = Image.open(png).convert("RGB")
    for fmt, name in [("PNG", "scene.png"), ("JPEG", "scene.jpg"), ("BMP", "scene.bmp"), ("TGA", "scene.tga"),
                      ("GIF", "scene.gif")]:
        b = io.BytesIO()
        img.save(b, fmt)
        write("image", name, b.getvalue())
    b = io.BytesIO()
    img.convert("RGBA").save(b, "PNG")
    write("image", "alpha.png", b.getvalue())
    b = io.BytesIO()
    img.convert("L").save(b, "PNG")
    write("image", "gray.png", b.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6
    b = io.BytesIO()
    img.save(b, "JPEG", exif=exif.tobytes())
    write("image", "exif_rotated.jpg", b.getvalue())
    gen = os.path.join(tmp, "generated.png")
    subprocess.run([args.sine, "-q", "generate", "-p", "a red circle", "-W", "32", "-H", "32", "--steps", "1", "-o",
                    gen], check=True, stdout=subprocess.DEVNULL)
    write("image", "with_parameters.png", open(gen, "rb").read())

    # tokenizer: prompts as users write them, A1111 syntax, HTML entities, mojibake, other scripts
    for i, text in enumerate([
            "a photo of a sks dog wearing a hat", "(masterpiece:1.2), [worst quality], a cat BREAK a dog",
            "caf\u00e9 &amp; cr\u00e8me &lt;3", "Ã©tÃ© mojibake", "\u732b\u3068\u72ac \U0001F436 emoji",
            "   spaces\t\tand\nnewlines   ", "don't it's we'll", "a" * 300]):
        write("tokenizer", f"prompt{i}", text.encode())

    # json: --model-config, request bodies, A1111 parameters
    write("json", "model_config", json.dumps({"unet": {"num_heads": 8, "norm_groups": 32}, "vae": {"norm_groups": 32},
                                              "text": {"heads": 12}}))
    write("json", "txt2img", json.dumps({"prompt": "a cat", "steps": 20, "cfg_scale": 7, "words": ["cat"],
                                         "override_settings": {"sd_model_checkpoint": "x"}}))
    write("json", "parameters", "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, "
                                "Seed: 1, Size: 512x512, Model hash: 0123456789")
    write("json", "nested", "[" * 64 + "]" * 64)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

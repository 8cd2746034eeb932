#!/usr/bin/python3
"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/) from real files: a micro SD 1.x
checkpoint written by `sine init-random`, renders of the shapes world in every format the image
reader takes, PNGs with A1111 parameters, prompts, the JSON the project reads, the methods' files
(inversion, concept, fine-tune, embedding, LoRAs) and server request bodies. Run once after a change
to a format; the outputs are committed.

    /usr/bin/python3 tests/fuzz/make_corpus.py --sine build/sine [--targets method_files,requests]
    (Debian's python3-pil)
"""
import base64
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
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets to regenerate")
    args = ap.parse_args()
    targets = args.targets.split(",")
    tmp = tempfile.mkdtemp()
    for target in targets:
        shutil.rmtree(os.path.join(HERE, "corpus", target), ignore_errors=True)
        globals()["corpus_" + target](args.sine, tmp)
    shutil.rmtree(tmp)


def run(sine, *argv):
    subprocess.run([sine, "-q", *argv], check=True, stdout=subprocess.DEVNULL)


def render(sine, tmp, caption="a red striped star on the left on a blue background", size=32):
    png = os.path.join(tmp, f"scene{size}.png")
    run(sine, "world", "render", "--caption", caption, "-o", png, "-W", str(size), "-H", str(size))
    return png


def corpus_safetensors(sine, tmp):
    # small valid files and the edge cases the loader must refuse
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



def corpus_checkpoint(sine, tmp):
    # a micro SD 1.x model (every key of an SD 1.5 file) in both dtypes
    for dtype in ["fp16", "fp32"]:
        path = os.path.join(tmp, f"micro-{dtype}.safetensors")
        run(sine, "init-random", "--config", "micro", "--dtype", dtype, "-o", path)
        write("checkpoint", f"micro_{dtype}", open(path, "rb").read())



def corpus_image(sine, tmp):
    # shapes-world renders in every format stb_image reads, with and without alpha, a PNG with
    # A1111 parameters, a JPEG with an EXIF orientation
    img = Image.open(render(sine, tmp)).convert("RGB")
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
    run(sine, "generate", "-p", "a red circle", "-W", "32", "-H", "32", "--steps", "1", "-o", gen)
    write("image", "with_parameters.png", open(gen, "rb").read())



def corpus_tokenizer(sine, tmp):
    # prompts as users write them, A1111 syntax, HTML entities, mojibake, other scripts
    for i, text in enumerate([
            "a photo of a sks dog wearing a hat", "(masterpiece:1.2), [worst quality], a cat BREAK a dog",
            "caf\u00e9 &amp; cr\u00e8me &lt;3", "Ã©tÃ© mojibake", "\u732b\u3068\u72ac \U0001F436 emoji",
            "   spaces\t\tand\nnewlines   ", "don't it's we'll", "a" * 300]):
        write("tokenizer", f"prompt{i}", text.encode())



def corpus_json(sine, tmp):
    # --model-config, request bodies, A1111 parameters
    write("json", "model_config", json.dumps({"unet": {"num_heads": 8, "norm_groups": 32}, "vae": {"norm_groups": 32},
                                              "text": {"heads": 12}}))
    write("json", "txt2img", json.dumps({"prompt": "a cat", "steps": 20, "cfg_scale": 7, "words": ["cat"],
                                         "override_settings": {"sd_model_checkpoint": "x"}}))
    write("json", "parameters", "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, "
                                "Seed: 1, Size: 512x512, Model hash: 0123456789")
    write("json", "nested", "[" * 64 + "]" * 64)


def corpus_method_files(sine, tmp):
    # the files the methods write, made by the CLI on the bundled model with few steps (each < 1 MB)
    scene = render(sine, tmp, size=64)
    mask = os.path.join(tmp, "mask.png")
    Image.new("L", (64, 64), 0).save(mask)
    m = Image.open(mask)
    m.paste(255, (8, 16, 40, 48))
    m.save(mask)
    out = lambda name: os.path.join(tmp, name + ".safetensors")
    run(sine, "invert", scene, "-p", "a red striped star", "--steps", "3", "-o", out("inversion"))
    run(sine, "invert", scene, "-p", "a red striped star", "--steps", "2", "--null-text", "--inner-steps", "1",
        "--schedule", "specref", "-o", out("inversion_null_text"))
    run(sine, "insert", "train", "-i", scene, "--mask", mask, "--class", "star", "--stage1-steps", "1",
        "--stage2-steps", "1", "--batch", "1", "--rank", "1", "-o", out("concept"))
    run(sine, "insert", "train", "-i", scene, "--mask", mask, "--class", "star", "--stage1-steps", "1",
        "--stage2-steps", "0", "--batch", "1", "-o", out("concept_stage1"))
    run(sine, "insert", "export", "-c", out("concept"), "--embedding", out("embedding"), "--lora", out("lora_kohya"))
    run(sine, "insert", "export", "-c", out("concept"), "--lora", out("lora_diffusers"), "--lora-format", "diffusers")
    run(sine, "finetune", "-i", scene, "--class", "star", "--steps", "1", "--lora", "1", "--checkpoint-every", "0",
        "-o", out("finetune_lora"))
    run(sine, "finetune", "-i", scene, "--class", "star", "--patch", "--steps", "1", "--lora", "1",
        "--checkpoint-every", "0", "-o", out("finetune_patch"))
    for name in ["inversion", "inversion_null_text", "concept", "concept_stage1", "embedding", "lora_kohya",
                 "lora_diffusers", "finetune_lora", "finetune_patch"]:
        data = open(out(name), "rb").read()
        assert len(data) < 1 << 20, f"{name}: {len(data)} bytes is over the fuzzers' max_len"
        write("method_files", name, data)


def corpus_requests(sine, tmp):
    # "KIND\nBODY" as the server's handlers read them; images are 32x32 PNGs in base64
    scene = base64.b64encode(open(render(sine, tmp), "rb").read()).decode()
    b = io.BytesIO()
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (4, 8, 20, 24))
    mask.save(b, "PNG")
    mask = base64.b64encode(b.getvalue()).decode()
    bodies = {
        "txt2img": {"prompt": "a red circle <lora:x:0.5>", "negative_prompt": "blue", "steps": 20, "cfg_scale": 7,
                    "width": 64, "height": 64, "seed": -1, "sampler_name": "DPM++ 2M", "scheduler": "karras",
                    "batch_size": 2, "n_iter": 1, "override_settings": {"CLIP_stop_at_last_layers": 2}},
        "img2img": {"prompt": "a star", "init_images": [scene], "mask": mask, "mask_blur": 4, "inpainting_fill": 1,
                    "inpainting_mask_invert": 0, "denoising_strength": 0.6, "steps": 10},
        "finetune": {"image": scene, "class_word": "star", "patch": True, "steps": 10, "lr": 1e-4, "lora_rank": 2},
        "edit": {"finetune": "0123abcd", "prompt": "a blue star", "K": 10, "v": 0.7, "width": 128, "height": 64,
                 "mode": "sine"},
        "insert-train": {"image": scene, "mask": mask, "class_word": "star", "objective": "fg+bg",
                         "stage1_steps": 5, "stage2_steps": 5, "semantic_loss": True},
        "insert-generate": {"concepts": ["0123abcd"], "scales": [0.8], "prompt": "a * star on a red background"},
        "invert": {"image": scene, "prompt": "a red star", "steps": 10, "schedule": "specref", "null_text": True},
        "p2p": {"image": scene, "prompt": "a red star", "target": "a blue star", "edit": "replace",
                "reweight": {"blue": 2}, "cross_replace_words": {"blue": [0, 0.5]}, "local_blend": True,
                "blend_words": "star:star"},
        "specref": {"source": scene, "reference": scene, "ref_mask": mask, "prompt": "a red star",
                    "target": "a striped star", "words": ["striped"], "masks": "both", "sr_start": 0, "sr_end": 40},
    }
    for kind, body in bodies.items():
        write("requests", kind, kind + "\n" + json.dumps(body))


TARGETS = ["safetensors", "checkpoint", "image", "tokenizer", "json", "method_files", "requests"]

if __name__ == "__main__":
    main()

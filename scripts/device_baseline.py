#!/usr/bin/env python3
"""The reference the device check compares sine with: the same CFG sampling step (UNet on a batch
of 2 at a 64x64 latent, SD 1.5 configuration, random weights) in diffusers (its default attention
processor: torch's SDPA), timed like `sine bench` (one warm-up, mean of repeats, synchronised).
Writes JSON rows; if diffusers cannot be imported, the row says why and nothing is timed."""
import argparse, json, sys, time

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(8, 16, 32, 32), cross_attention_dim=32, attention_head_dim=2,
                 norm_num_groups=4,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="sd15", choices=["sd15", "tiny"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", nargs="+", default=["fp16", "bf16"])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px), as sine bench --latent")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import torch
    rows = []
    try:
        import diffusers
        from diffusers import UNet2DConditionModel, DDIMScheduler
    except Exception as e:  # noqa: BLE001 - any import failure is reported, not raised
        rows.append({"what": "diffusers CFG step", "error": f"diffusers not importable: {e!r}"})
        json.dump({"torch": torch.__version__, "rows": rows}, open(a.out, "w"), indent=2)
        print(rows[-1]["error"])
        return
    cfg = SD15_UNET if a.config == "sd15" else TINY_UNET
    latent = a.latent
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    sync = (lambda: torch.cuda.synchronize()) if a.device.startswith("cuda") else (lambda: None)
    for name in a.dtypes:
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**cfg).to(a.device, dtypes[name]).eval()
        sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        sched.set_timesteps(50)
        x = torch.randn(1, 4, latent, latent, device=a.device, dtype=dtypes[name])
        ctx = torch.randn(2, 77, cfg["cross_attention_dim"], device=a.device, dtype=dtypes[name])
        t = sched.timesteps[0]

        def step():
            with torch.no_grad():
                eps = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample
                u, c = eps.chunk(2)
                return sched.step(u + 7.5 * (c - u), t, x).prev_sample

        step()
        sync()
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(a.repeat):
            step()
        sync()
        mean = (time.perf_counter() - start) / a.repeat
        peak = torch.cuda.max_memory_allocated() / 1e9 if a.device.startswith("cuda") else 0.0
        rows.append({"what": "diffusers CFG step (UNet B2 + DDIM)", "dtype": name, "mean_s": mean,
                     "it_per_s": 1.0 / mean, "peak_gb": peak, "shape": f"B2 {latent}x{latent}", "diffusers": diffusers.__version__})
        print(json.dumps(rows[-1]))
    json.dump({"torch": torch.__version__, "rows": rows}, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())

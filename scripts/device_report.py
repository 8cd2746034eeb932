#!/usr/bin/env python3
"""Collects the device check's JSON files (bench_*.json, methods_*.json, baseline.json, the CUDA
test results) into OUT/results.json and prints the Markdown table docs/performance.md takes."""
import glob, json, os, re, sys

out = sys.argv[1]
res = {"bench": {}, "methods": {}, "baseline": None, "cuda_tests": None}
for f in sorted(glob.glob(os.path.join(out, "bench_*.json"))):
    res["bench"][os.path.basename(f)[6:-5]] = json.load(open(f))
for f in sorted(glob.glob(os.path.join(out, "methods_*.json"))):
    res["methods"][os.path.basename(f)[8:-5]] = json.load(open(f))
if os.path.exists(os.path.join(out, "baseline.json")):
    res["baseline"] = json.load(open(os.path.join(out, "baseline.json")))
tests = os.path.join(out, "cuda-tests.txt")
if os.path.exists(tests):
    m = re.findall(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", open(tests).read())
    res["cuda_tests"] = {"passed_percent": int(m[-1][0]), "failed": int(m[-1][1]), "total": int(m[-1][2])} if m else None
if os.path.exists(os.path.join(out, "version.txt")):
    res["version"] = open(os.path.join(out, "version.txt")).read().strip()
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)

print("# sine device check\n")
print("```\n" + res.get("version", "") + "\n```\n")
if res["cuda_tests"]:
    t = res["cuda_tests"]
    print(f"CUDA test label: {t['total'] - t['failed']}/{t['total']} passed\n")
print("| run | what | shape | mean s | it/s | peak GB | note |")
print("|---|---|---|---:|---:|---:|---|")
for run, j in res["bench"].items():
    for r in j.get("rows", []):
        print(f"| {run} | {r['what']} | {r['shape']} | {r['mean_s']:.4f} | {r['it_per_s']:.2f} | {r['peak_gb']:.2f} | {r['note']} |")
for run, j in res["methods"].items():
    for r in j.get("rows", []):
        print(f"| methods {run} | {r['what']} | {r.get('shape', '')} | {r['mean_s']:.4f} | {r['it_per_s']:.2f} | {r['peak_gb']:.2f} | {r['note']} |")
if res["baseline"]:
    for r in res["baseline"]["rows"]:
        if "error" in r:
            print(f"| baseline | {r['what']} | | | | | {r['error']} |")
        else:
            print(f"| baseline {r['dtype']} | {r['what']} | {r.get('shape', '')} | {r['mean_s']:.4f} | {r['it_per_s']:.2f} | {r['peak_gb']:.2f} | diffusers {r['diffusers']} |")

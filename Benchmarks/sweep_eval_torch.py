#!/usr/bin/env python3
"""PyTorch side of Benchmarks/sweep_eval.sh: choosing λ for task arithmetic the way it is done in
Python today. Loads the base and the fine-tunes (transformers `CLIPVisionModelWithProjection`),
forms the task vectors, and for every λ of the grid builds θ₀ + λ·Σ τₜ in place, evaluates it on
every task (top-1 of head · e/‖e‖, as merge-cli eval), keeps the best by mean accuracy (the first
of equals) and saves it with `save_pretrained`. Prints every point's accuracies, the choice, the
seconds, the peak RSS (ru_maxrss) and the process's CPU seconds.
"""
import argparse
import json
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPVisionModelWithProjection


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--grid", default="0:1:0.1")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    root = Path(args.root)
    load = lambda p: CLIPVisionModelWithProjection.from_pretrained(p, dtype=torch.float32).eval()
    model = load(root / "base")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    tau = {k: torch.zeros_like(v) for k, v in base.items()}
    for t in range(args.tasks):
        finetuned = load(root / f"model{t}").state_dict()
        for k in tau:
            tau[k] += finetuned[k] - base[k]
        del finetuned
    data = [load_file(root / f"data{t}.safetensors") for t in range(args.tasks)]
    heads = [load_file(root / f"head{t}.safetensors")["weight"].float() for t in range(args.tasks)]
    start_, stop, step = (float(x) for x in args.grid.split(":"))
    grid = [round(start_ + i * step, 12) for i in range(int((stop - start_) / step + 1e-9) + 1)]
    points, best, best_state = [], None, None
    with torch.no_grad():
        for lam in grid:
            model.load_state_dict({k: base[k] + lam * tau[k] for k in base})
            accuracies = []
            for d, head in zip(data, heads):
                correct = 0
                pixels, labels = d["pixel_values"].float(), d["labels"]
                for i in range(0, len(labels), args.batch):
                    e = model(pixel_values=pixels[i:i + args.batch]).image_embeds
                    logits = torch.nn.functional.normalize(e, dim=-1) @ head.T
                    correct += int((logits.argmax(-1) == labels[i:i + args.batch]).sum())
                accuracies.append(correct / len(labels))
            average = sum(accuracies) / len(accuracies)
            points.append({"lambda": lam, "accuracies": accuracies, "average": average})
            if best is None or average > best["average"]:
                best = points[-1]
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
    model.save_pretrained(args.output)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"points": points, "selected_lambda": best["lambda"], "seconds": seconds,
                      "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()

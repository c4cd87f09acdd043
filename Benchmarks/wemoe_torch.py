#!/usr/bin/env python3
"""PyTorch side of Benchmarks/wemoe.sh: FusionBench's own WEMoE (`fusion_bench.models.we_moe.
WeightEnsemblingMoE`, upscaled as `CLIPWeightEnsemblingMoEAlgorithm.construct_moe_model` does) on
random ViT-B/32-shaped transformers CLIP encoders (base + --experts perturbed copies), timing the
same passes as `benchmark-tool wemoe`:

- eval: `model(pixel_values=x).image_embeds` under torch.inference_mode with per-sample routing
  (batch_reduce = False, FusionBench's evaluation), --eval-batch images;
- step: one test-time-adaptation step on --batch images: batch_reduce = True, forward, mean softmax
  entropy through a 10-class head, backward to the routers, Adam step.

Prints `key=value` lines: the best of --runs after one warm-up run (for the step also the median, and the
best CPU seconds of the process, steadier on a shared machine).

Usage: python Benchmarks/wemoe_torch.py [--experts 8] [--batch 16] [--eval-batch 32] [--threads 2] [--runs 3]
"""
import argparse
import copy
import resource
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from fusion_bench.models.we_moe import WeightEnsemblingMoE


def measure(fn, runs):
    """Best and median wall seconds and best CPU seconds (every thread) of `runs` runs after a warm-up."""
    fn()
    walls, cpu = [], float("inf")
    for _ in range(max(1, runs)):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    walls.sort()
    return walls[0], walls[len(walls) // 2], cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=args.layers,
                              num_attention_heads=12, image_size=224, patch_size=32, projection_dim=512,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    start = time.perf_counter()
    # Parameters must require grad when wrapped: WeightEnsemblingMoE drops the task vectors of frozen ones.
    base = CLIPVisionModelWithProjection(config).eval()
    moe = copy.deepcopy(base)
    mlps = [[] for _ in range(args.layers)]
    with torch.no_grad():
        for _ in range(args.experts):
            expert = copy.deepcopy(base)
            for p in expert.parameters():
                p.add_(0.002 * torch.randn_like(p))
            for name, p in moe.named_parameters():  # task arithmetic, λ = 0.3
                p.add_(0.3 * (dict(expert.named_parameters())[name] - dict(base.named_parameters())[name]))
            for i, layer in enumerate(expert.vision_model.encoder.layers):
                mlps[i].append(layer.mlp)
    for i, layer in enumerate(moe.vision_model.encoder.layers):
        layer.mlp = WeightEnsemblingMoE(hidden_size=768, base_model=copy.deepcopy(base.vision_model.encoder.layers[i].mlp),
                                        expert_models=mlps[i], init_lambda=0.3, batch_first=True, router_hidden_layers=2,
                                        batch_reduce=False)
    setup = time.perf_counter() - start
    moe.requires_grad_(False)
    gates = [p for n, p in moe.named_parameters() if ".gate." in n]
    for p in gates:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(gates, lr=1e-4)
    x = torch.randn(max(args.batch, args.eval_batch), 3, 224, 224)
    head = torch.randn(10, 512)

    def set_reduce(value):
        for layer in moe.vision_model.encoder.layers:
            layer.mlp.batch_reduce = value

    def evaluate():
        set_reduce(False)
        with torch.inference_mode():
            return moe(pixel_values=x[:args.eval_batch]).image_embeds

    def step():
        set_reduce(True)
        optimizer.zero_grad(set_to_none=True)
        e = moe(pixel_values=x[:args.batch]).image_embeds
        logits = (e / e.norm(dim=-1, keepdim=True)) @ head.T
        logp = torch.log_softmax(logits, dim=-1)
        loss = -(logp.exp() * logp).sum(-1).mean()
        loss.backward()
        optimizer.step()

    eval_s = measure(evaluate, args.runs)[0]
    step_s, step_median, step_cpu = measure(step, args.runs)
    print(f"torch {torch.__version__} experts={args.experts} threads={torch.get_num_threads()} "
          f"router_parameters={sum(p.numel() for p in gates)} upscale_seconds={setup:.1f}")
    print(f"eval_batch={args.eval_batch} eval_seconds={eval_s:.3f} eval_seconds_per_image={eval_s / args.eval_batch:.4f} "
          f"eval_images_per_second={args.eval_batch / eval_s:.2f}")
    print(f"step_batch={args.batch} step_seconds={step_s:.3f} step_median_seconds={step_median:.3f} step_cpu_seconds={step_cpu:.3f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000:.0f}")


if __name__ == "__main__":
    main()

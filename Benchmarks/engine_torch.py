#!/usr/bin/env python3
"""PyTorch side of Benchmarks/engine.sh: times transformers' CLIPVisionModelWithProjection
(ViT-B/32 shape, random weights made here) for the same passes as `benchmark-tool engine`:

- forward: `model(pixel_values=x).image_embeds` under torch.inference_mode (sdpa attention);
- jvp: torch.func.jvp of θ ↦ image_embeds along a full random direction (eager attention,
  which forward-mode AD supports);
- step: forward + backward of the mean softmax entropy through a 10-class head (parameter
  gradients only).

Prints `key=value` lines: the best of --runs after one warm-up run.
Usage: python Benchmarks/engine_torch.py [--batch 32] [--threads 2] [--runs 5] [--layers 12]
"""
import argparse
import resource
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection


CPU = {}


def best(fn, runs, name):
    """Best wall time of `runs` runs after a warm-up; the best process CPU time goes to CPU[name]
    (steadier than wall time on a shared machine)."""
    fn()
    result = cpu = float("inf")
    for _ in range(max(1, runs)):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        result = min(result, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    CPU[name] = cpu
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=args.layers,
                              num_attention_heads=12, image_size=224, patch_size=32, projection_dim=512,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    model = CLIPVisionModelWithProjection(config).eval()
    x = torch.randn(args.batch, 3, 224, 224)
    head = torch.randn(10, 512)

    def forward():
        with torch.inference_mode():
            return model(pixel_values=x).image_embeds

    forward_s = best(forward, args.runs, "forward")

    eager = CLIPVisionModelWithProjection._from_config(config, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    params = {k: v.detach() for k, v in eager.named_parameters()}
    tangents = {k: 1e-3 * torch.randn_like(v) for k, v in params.items()}

    def f(p):
        return torch.func.functional_call(eager, p, (x,)).image_embeds

    def jvp():
        with torch.no_grad():
            return torch.func.jvp(f, (params,), (tangents,))

    jvp_s = best(jvp, args.runs, "jvp")

    def step():
        model.zero_grad(set_to_none=True)
        e = model(pixel_values=x).image_embeds
        logits = (e / e.norm(dim=-1, keepdim=True)) @ head.T
        logp = torch.log_softmax(logits, dim=-1)
        loss = -(logp.exp() * logp).sum(-1).mean()
        loss.backward()

    step_s = best(step, args.runs, "step")
    b = args.batch
    print(f"torch {torch.__version__} batch={b} threads={torch.get_num_threads()}")
    print(f"forward_seconds={forward_s:.4f} forward_images_per_second={b / forward_s:.2f}")
    print(f"jvp_seconds={jvp_s:.4f} jvp_images_per_second={b / jvp_s:.2f} jvp_over_forward={jvp_s / forward_s:.2f}")
    print(f"step_seconds={step_s:.4f} step_over_forward={step_s / forward_s:.2f} "
          f"backward_seconds={step_s - forward_s:.4f} backward_over_forward={(step_s - forward_s) / forward_s:.2f}")
    f, j, st = CPU["forward"], CPU["jvp"], CPU["step"]
    print(f"cpu_seconds forward={f:.3f} jvp={j:.3f} step={st:.3f} jvp_over_forward={j / f:.2f} "
          f"step_over_forward={st / f:.2f} backward_over_forward={(st - f) / f:.2f}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000:.0f}")


if __name__ == "__main__":
    main()

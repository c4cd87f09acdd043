#!/usr/bin/env python3
"""PyTorch side of Benchmarks/datamerging.sh.

`generate DIR`: a random ViT-B/32-shaped transformers `CLIPVisionModelWithProjection` (DIR/base)
and --tasks fine-tunes (base + N(0, 0.002²) on every tensor, DIR/model{t}), each an F32 HF
directory, plus per task --images random preprocessed images (DIR/data{t}.safetensors,
`pixel_values` F16 and random `labels`) and a random 10-class head (DIR/head{t}.safetensors).

`fusionbench DIR`: FusionBench's layer-wise AdaMerging on those files, as
`LayerWiseAdaMergingAlgorithm.test_time_adaptation` runs it (`LayerWiseMergedModel`, λ = 0.3,
`entropy_loss`, Adam lr 1e-3, batches of --batch images per task, one backward per task, then the
optimiser step and `merge_weights`); `--task-wise` uses `TaskWiseMergedModel`. Prints the seconds
of each step after loading, the peak RSS (ru_maxrss) and the process's CPU seconds (user + system).
"""
import argparse
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection


def generate(args, root: Path):
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32, projection_dim=512, hidden_act="quick_gelu")
    base = CLIPVisionModelWithProjection(config).eval()
    base.save_pretrained(root / "base")
    for t in range(args.tasks):
        with torch.no_grad():
            model = CLIPVisionModelWithProjection(config).eval()
            model.load_state_dict(base.state_dict())
            for p in model.parameters():
                p.add_(0.002 * torch.randn_like(p))
        model.save_pretrained(root / f"model{t}")
        pixels = torch.randn(args.images, 3, 224, 224).half()
        save_file({"pixel_values": pixels, "labels": torch.randint(0, 10, (args.images,))}, root / f"data{t}.safetensors")
        head = torch.nn.functional.normalize(torch.randn(10, 512), dim=-1) * 100
        save_file({"weight": head}, root / f"head{t}.safetensors")


def fusionbench(args, root: Path):
    from fusion_bench.method.adamerging.entropy_loss import entropy_loss
    from fusion_bench.models.wrappers.layer_wise_fusion import LayerWiseMergedModel, get_layer_wise_weights
    from fusion_bench.models.wrappers.task_wise_fusion import TaskWiseMergedModel, get_task_wise_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = lambda p: CLIPVisionModelWithProjection.from_pretrained(p, dtype=torch.float32)
    start = time.perf_counter()
    pretrained = load(root / "base")
    finetuned = [load(root / f"model{t}") for t in range(args.tasks)]
    if args.task_wise:
        module = TaskWiseMergedModel(get_task_wise_weights(args.tasks, 0.3), pretrained, finetuned,
                                     clamp_weights=False, tie_weights=True, strict=False)
    else:
        layers = len(tuple(p for p in pretrained.parameters() if p.requires_grad))
        module = LayerWiseMergedModel(get_layer_wise_weights(args.tasks, layers, 0.3), pretrained, finetuned,
                                      clamp_weights=False, tie_weights=True, strict=False)
    data = [load_file(root / f"data{t}.safetensors")["pixel_values"] for t in range(args.tasks)]
    heads = [load_file(root / f"head{t}.safetensors")["weight"] for t in range(args.tasks)]
    optimizer = torch.optim.Adam([module.merge_weight], lr=1e-3)
    module.train()
    module.merge_weights()
    setup = time.perf_counter() - start
    steps = []
    for step in range(args.steps):
        begin = time.perf_counter()
        for t in range(args.tasks):
            index = torch.randperm(data[t].shape[0])[:args.batch]
            e = module(pixel_values=data[t][index].float()).image_embeds
            logits = (e / e.norm(p=2, dim=-1, keepdim=True)) @ heads[t].T
            loss = entropy_loss(logits)
            loss.backward(retain_graph=True)
        optimizer.step()
        optimizer.zero_grad()
        module.merge_weights()
        steps.append(time.perf_counter() - begin)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} tasks={args.tasks} setup_seconds={setup:.1f}")
    print("step_seconds=" + ",".join(f"{s:.2f}" for s in steps))
    print(f"mean_step_seconds={sum(steps) / len(steps):.2f}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak_rss_mb={usage.ru_maxrss / 1000:.0f} cpu_seconds={usage.ru_utime + usage.ru_stime:.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["generate", "fusionbench"])
    ap.add_argument("root")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--task-wise", action="store_true")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    generate(args, root) if args.command == "generate" else fusionbench(args, root)


if __name__ == "__main__":
    main()

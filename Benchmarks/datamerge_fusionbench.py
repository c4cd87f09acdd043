#!/usr/bin/env python3
"""FusionBench side of Benchmarks/datamerge.sh, and the inputs both sides read.

`generate DIR`: a ViT-B/32-shaped CLIPVisionModelWithProjection with random weights (transformers'
initialisation, seeded) as DIR/base, T "fine-tunes" DIR/expert{t} (the base with every tensor
perturbed by 5 % of its RMS), and per task DIR/data{t}.safetensors (`pixel_values` [N, 3, 224,
224] F32 of N(0, 1) plus a task pattern, `labels` [N] over 10 classes) and DIR/head{t}.safetensors
(`weight` [10, 512], unit rows × 10): F32 HF directories, the format merge-cli reads.

`run METHOD DIR OUT`: FusionBench's own algorithm (fusion-bench 0.2.33, float32, CPU, its CLIP
config's settings: num_*_examples, batch size, reduce_non_diagonal_ratio 0.95, normalised Fisher,
ε 1e-6) on those inputs through Fixtures/datamerge/fusionbench_harness.py, then the merged
state dict saved to OUT (safetensors), as merge-cli writes its output. METHOD is regmean,
regmean_plusplus or fisher. The models load as FusionBench loads them (`from_pretrained`,
default attention). Prints `seconds=…` (the whole run after the imports: loading, merging,
saving); peak memory is measured outside, by GNU time.

`check DIR OUTPUT…`: the float64 reference of the worst-conditioned layer, `visual_projection`
(its inputs are N pooled outputs per task against 768 features: Σₜ Gₜ′ has a condition number near
10⁵ on the default inputs), from each expert's float64 forward on its images, and how far each
OUTPUT's projection is from it (max |Δ| / max |W|).

`imports`: only the imports (torch, transformers, lightning, fusion-bench), for the memory they take
before any model is loaded.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Fixtures" / "datamerge"))
import fusionbench_harness  # noqa: E402
from fusionbench_harness import harness  # noqa: E402

from fusion_bench.method.fisher_merging.clip_fisher_merging import FisherMergingForCLIPVisionModel  # noqa: E402
from fusion_bench.method.regmean.clip_regmean import RegMeanAlgorithmForCLIP  # noqa: E402
from fusion_bench.method.regmean_plusplus.clip_regmean_plusplus import RegMeanAlgorithmForCLIPPlusPlus  # noqa: E402


def generate(directory: Path, tasks: int, images: int, layers: int) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=layers, num_attention_heads=12,
                              image_size=224, patch_size=32, projection_dim=512, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    base = CLIPVisionModelWithProjection(config).eval()
    base.save_pretrained(directory / "base", safe_serialization=True)
    for t in range(tasks):
        expert = CLIPVisionModelWithProjection(config).eval()
        with torch.no_grad():
            for (_, p), (_, q) in zip(expert.named_parameters(), base.named_parameters()):
                rms = q.pow(2).mean().sqrt()
                p.copy_(q + 0.05 * rms * torch.randn(q.shape, generator=gen))
        expert.save_pretrained(directory / f"expert{t}", safe_serialization=True)
        pattern = torch.randn(1, 3, 224, 224, generator=gen)
        pixels = torch.randn(images, 3, 224, 224, generator=gen) + pattern
        labels = torch.randint(0, 10, (images,), generator=gen)
        save_file({"pixel_values": pixels.contiguous(), "labels": labels}, directory / f"data{t}.safetensors")
        head = torch.randn(10, 512, generator=gen)
        save_file({"weight": (10 * head / head.norm(dim=1, keepdim=True)).contiguous()}, directory / f"head{t}.safetensors")


def run(method: str, directory: Path, output: Path, samples: int, batch: int) -> None:
    start = time.perf_counter()
    experts = sorted(directory.glob("expert*"), key=lambda p: int(p.name[len("expert"):]))
    datasets, heads = [], {}
    for t in range(len(experts)):
        data = load_file(directory / f"data{t}.safetensors")
        datasets.append([(data["pixel_values"][i], int(data["labels"][i])) for i in range(len(data["labels"]))])
        heads[f"task{t}"] = load_file(directory / f"head{t}.safetensors")["weight"]
    kwargs = dict(exclude_param_names_regex=[], dataloader_kwargs={"batch_size": batch, "num_workers": 0})
    if method == "fisher":
        algorithm = FisherMergingForCLIPVisionModel(normalize_fisher_weight=True, minimal_fisher_weight=1e-6,
                                                    num_fisher_examples=samples, **kwargs)
    else:
        cls = RegMeanAlgorithmForCLIPPlusPlus if method == "regmean_plusplus" else RegMeanAlgorithmForCLIP
        algorithm = cls(num_regmean_examples=samples, reduce_non_diagonal_ratio=0.95, weight_transpose=True, **kwargs)
    harness(algorithm, heads, torch.float32)
    load = lambda d: CLIPVisionModelWithProjection.from_pretrained(d).eval()  # noqa: E731
    pool = fusionbench_harness.pool(load(directory / "base"), [load(d) for d in experts], datasets)
    merged = algorithm.run(pool)
    save_file({k: v.contiguous() for k, v in fusionbench_harness.state(merged).items()}, output)
    print(f"seconds={time.perf_counter() - start:.2f}")


def check(directory: Path, outputs: list[Path], alpha: float = 0.95) -> None:
    experts = sorted(directory.glob("expert*"), key=lambda p: int(p.name[len("expert"):]))
    a = b = 0
    for t, path in enumerate(experts):
        model = CLIPVisionModelWithProjection.from_pretrained(path, attn_implementation="eager").double().eval()
        pixels = load_file(directory / f"data{t}.safetensors")["pixel_values"].double()
        with torch.no_grad():
            pooled = model.vision_model(pixel_values=pixels).pooler_output
        g = pooled.T @ pooled / pooled.shape[0]
        g = alpha * g + (1 - alpha) * torch.diag(torch.diag(g))
        a, b = a + g, b + g @ model.visual_projection.weight.double().T
    reference = torch.linalg.solve(a, b).T
    print(f"cond={torch.linalg.cond(a).item():.3g}")
    for output in outputs:
        file = output / "model.safetensors" if output.is_dir() else output
        w = load_file(file)["visual_projection.weight"].double()
        print(f"{output.name}={((w - reference).abs().max() / reference.abs().max()).item():.3g}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir", type=Path)
    g.add_argument("--tasks", type=int, default=8)
    g.add_argument("--images", type=int, default=32)
    g.add_argument("--layers", type=int, default=12)
    r = sub.add_parser("run")
    r.add_argument("method", choices=["regmean", "regmean_plusplus", "fisher"])
    r.add_argument("dir", type=Path)
    r.add_argument("output", type=Path)
    r.add_argument("--samples", type=int, default=256)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("check")
    c.add_argument("dir", type=Path)
    c.add_argument("outputs", type=Path, nargs="+")
    sub.add_parser("imports")
    args = ap.parse_args()
    if args.command == "imports":
        return
    if args.command == "check":
        torch.set_num_threads(2)
        check(args.dir, args.outputs)
        return
    if args.command == "generate":
        args.dir.mkdir(parents=True, exist_ok=True)
        generate(args.dir, args.tasks, args.images, args.layers)
    else:
        torch.set_num_threads(args.threads)
        run(args.method, args.dir, args.output, args.samples, args.batch)


if __name__ == "__main__":
    main()

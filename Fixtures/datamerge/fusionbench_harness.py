"""What FusionBench's CLIP merging algorithms need around them to run on plain files: the model
pool, the datasets, and what `CLIPClassificationMixin` would otherwise build from a full CLIP
checkpoint (zero-shot heads, the projection, the logit scale, the image processor, the Fabric).
Shared by `make_datamerge_fixtures.py` (the goldens) and `Benchmarks/datamerge_fusionbench.py`
(the benchmark); the algorithms themselves run unmodified.

- The "vision model" whose output [1] FusionBench takes as the image embedding is the encoder with
  its `visual_projection` (`Encoder`), so that the projection is a merged nn.Linear, as in
  merge-cli's checkpoints; the mixin's own projection is then the identity.
- Each task's zero-shot head is the task's head file, with the logit scale folded in (scale 1).
- The images are stored preprocessed; the processor passes them through.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn
from transformers import CLIPVisionModelWithProjection

from fusion_bench.method.regmean_plusplus.clip_regmean_plusplus import RegMeanAlgorithmForCLIPPlusPlus
from fusion_bench.method.regmean_plusplus.regmean_plusplus import RegMeanAlgorithmPlusPlus
from fusion_bench.modelpool import BaseModelPool

# fusion-bench 0.2.33 cannot construct its CLIP RegMean++ class: the class overrides its parent's
# `_config_mapping` bidict with a plain dict, which its own auto-registration then fails to invert.
# The mapping it means, as the Fisher class spells it:
RegMeanAlgorithmForCLIPPlusPlus._config_mapping = RegMeanAlgorithmPlusPlus._config_mapping | {
    "_dataloader_kwargs": "dataloader_kwargs"}


class Encoder(nn.Module):
    """What FusionBench's CLIP mixins call as `module(images)[1]`: here the image embedding."""

    def __init__(self, model: CLIPVisionModelWithProjection):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, pixel_values):
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return (None, self.visual_projection(pooled))


def harness(algorithm, heads: dict[str, torch.Tensor], dtype: torch.dtype):
    """Supplies what `CLIPClassificationMixin.setup_zero_shot_classification_head` would build."""
    algorithm._fabric_instance = L.Fabric(accelerator="cpu", devices=1)
    algorithm._clip_processor = lambda image: image
    algorithm.zeroshot_weights = {name: head.to(dtype) for name, head in heads.items()}
    algorithm.visual_projection = nn.Identity()
    algorithm.logit_scale_exp = torch.tensor(1.0, dtype=dtype)
    algorithm.whether_setup_zero_shot_classification_head = True
    for hook in ("on_regmean_start", "on_fisher_merging_start"):
        setattr(algorithm, hook, lambda: None)
    return algorithm


class Pairs(torch.utils.data.Dataset):
    """(image, label) pairs, as FusionBench's image datasets yield them."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Pool(BaseModelPool):
    """A model pool of instantiated models and datasets."""

    def __init__(self, models, datasets):
        super().__init__(models)
        self.datasets = datasets

    def load_train_dataset(self, dataset_name, *args, **kwargs):
        return self.datasets[dataset_name]


def pool(base: nn.Module, experts: list[nn.Module], datasets) -> Pool:
    """The pool of `base` (FusionBench's `_pretrained_`) and the experts `task{k}`, each with its
    (image, label) pairs."""
    models = {"_pretrained_": Encoder(base)}
    for k, expert in enumerate(experts):
        models[f"task{k}"] = Encoder(expert)
    return Pool(models, {f"task{k}": Pairs(ds) for k, ds in enumerate(datasets)})


def state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}

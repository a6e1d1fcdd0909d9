"""``openclip:<arch>/<pretrained-tag>[?weights=random]``: CLIP image towers (``lpft[clip]``).

The tag is one of ``open_clip.list_pretrained()`` for the architecture (``ViT-B-16/openai``) or a
local weights file (``ViT-B-16//data/clip/vit_b16.bin``). Features are the image embedding
(``encode_image``, not normalised). The text tower is kept, shared by every copy of the backbone
and outside its state dict, for the zero-shot head: ``head_init: zeroshot``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lpft.errors import ConfigError
from lpft.models.adapters import (
    LibraryBackbone,
    SharedReference,
    first_line,
    hub_offline_unless_reachable,
    quiet_library,
    require_extra,
    stage_names,
    stem_group_parameters,
    weights_unavailable,
)
from lpft.models.backbone import InputSpec, register_backbone_source
from lpft.registry import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, ModelSpec

EXTRA = "clip"
# Keys of OpenAI's CLIP archives that are hyperparameters, not weights.
ARCHIVE_ONLY_KEYS = ("input_resolution", "context_length", "vocab_size")
# The ViT image tower's first group in open_clip's own layer grouping (``VisionTransformer.lock``).
VIT_EMBEDDING = ("conv1", "class_embedding", "positional_embedding", "ln_pre")
# The modules of ``ModifiedResNet.stem`` (the three-convolution stem of CLIP's ResNets).
RESNET_STEM = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")


def _open_clip():
    return require_extra("open_clip", EXTRA)


def split_name(spec: ModelSpec) -> tuple[str, str | None]:
    arch, _, tag = spec.name.partition("/")
    return arch, tag or None


def check_spec(spec: ModelSpec) -> None:
    if spec.weights not in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS):
        raise ConfigError(f"model spec '{spec}': weights must be random or pretrained")
    if spec.weights == PRETRAINED_WEIGHTS and split_name(spec)[1] is None:
        raise ConfigError(
            f"model spec '{spec}' names no pretrained tag: use ARCH/TAG (lpft models openclip) "
            f"or {spec.with_options(weights=RANDOM_WEIGHTS)}"
        )


def input_spec_of(visual: nn.Module) -> InputSpec:
    """open_clip's eval preprocessing: short side to the input size, centre crop, its filter."""
    config = visual.preprocess_cfg
    size = config["size"]
    return InputSpec(
        size=size[0] if isinstance(size, tuple | list) else int(size),
        channels=3,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bicubic"),
        crop_pct=1.0,
    )


def weights_location(open_clip, arch: str, tag: str) -> tuple[str, str]:
    config = open_clip.get_pretrained_cfg(arch, tag) or {}
    if config.get("hf_hub"):
        hub = require_extra("huggingface_hub.constants", EXTRA)
        return f"hub repo {config['hf_hub']}", f"{hub.HF_HUB_CACHE} (the Hugging Face cache)"
    url = config.get("url", tag)
    return url, "~/.cache/clip (open_clip's cache; or give the file's path as the tag)"


def embedding_modules(visual: nn.Module) -> list[str]:
    """The image tower's embedding: a ViT's patch projection, class and position embeddings
    and pre-norm; a ModifiedResNet's stem; a timm trunk's stem group."""
    trunk = getattr(visual, "trunk", None)
    if isinstance(trunk, nn.Module):
        return [f"trunk.{name}" for name in stem_group_parameters(trunk)]
    names = RESNET_STEM if hasattr(visual, "stem") else VIT_EMBEDDING
    return [name for name in names if hasattr(visual, name)]


class OpenClipBackbone(LibraryBackbone):
    """The image tower of an open_clip model; ``clip`` (shared) keeps the text tower."""

    def __init__(self, clip: nn.Module, arch: str) -> None:
        visual = clip.visual
        super().__init__(
            visual,
            visual.output_dim,
            input_spec_of(visual),
            stage_names(visual),
            embedding=embedding_modules(visual),
        )
        self.clip = SharedReference(clip)
        self.arch = arch
        # Zero-shot heads by class names, shared by copies (one text pass per run, not per cell).
        self.zeroshot_heads = SharedReference({})

    def weights_module(self) -> nn.Module:
        return self.clip.value

    def adapt_state_dict(self, state_dict: dict) -> dict:
        return {k: v for k, v in state_dict.items() if k not in ARCHIVE_ONLY_KEYS}

    def has_zeroshot_head(self) -> bool:
        return True

    def zeroshot_head(self, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per class, the mean of the normalised text embeddings of open_clip's prompt
        templates, normalised again; zero bias. Logits are cosine similarities scaled by the
        image feature norm, so the argmax is CLIP's zero-shot prediction."""
        key = tuple(class_names)
        cache = self.zeroshot_heads.value
        if key not in cache:
            cache[key] = self._prompt_head(class_names)
        weight, bias = cache[key]
        return weight.clone(), bias.clone()

    @torch.no_grad()
    def _prompt_head(self, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        open_clip = _open_clip()
        tokenizer = open_clip.get_tokenizer(self.arch)
        clip = self.clip.value
        device = next(self.net.parameters()).device
        clip.to(device)
        weights = []
        for name in class_names:
            prompts = [template(name.replace("_", " ")) for template in prompt_templates()]
            embeddings = F.normalize(clip.encode_text(tokenizer(prompts).to(device)), dim=-1)
            weights.append(F.normalize(embeddings.mean(dim=0), dim=-1))
        weight = torch.stack(weights).float().cpu()
        return weight, torch.zeros(len(class_names))


def prompt_templates() -> tuple:
    """open_clip's short list of ImageNet prompt templates (callables of a class name)."""
    return tuple(_open_clip().SIMPLE_IMAGENET_TEMPLATES)


def catalogue(pattern: str | None) -> list[str]:
    pairs = _open_clip().list_pretrained()
    return [f"openclip:{arch}/{tag}" for arch, tag in pairs if not pattern or pattern in arch]


def create_clip(open_clip, spec: ModelSpec, arch: str, tag: str | None) -> nn.Module:
    """The architecture as the tag configures it (QuickGELU, preprocessing), with the tag's
    weights, or with random weights and nothing fetched: open_clip downloads a tag's weights
    even when told not to load them, so a random model is built without the tag."""
    tag_config = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    return open_clip.create_model(
        arch,
        pretrained=None if spec.random_weights else tag,
        pretrained_text=not spec.random_weights,
        force_quick_gelu=bool(tag_config.get("quick_gelu")),
        force_preprocess_cfg=tag_config,
    )


@register_backbone_source(
    "openclip",
    catalogue=catalogue,
    summary="open_clip image towers with zero-shot heads, e.g. openclip:ViT-B-16/openai",
    check=check_spec,
)
def build_openclip(spec: ModelSpec) -> OpenClipBackbone:
    open_clip = _open_clip()
    arch, tag = split_name(spec)
    if arch not in open_clip.list_models():
        raise ConfigError(f"model spec '{spec}': open_clip has no architecture '{arch}'")
    known_tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag is not None and tag not in known_tags and not Path(tag).expanduser().is_file():
        raise ConfigError(
            f"model spec '{spec}': '{tag}' is neither a pretrained tag of {arch} "
            f"({', '.join(known_tags) or 'none'}) nor a weights file"
        )
    try:
        with quiet_library(), hub_offline_unless_reachable():
            clip = create_clip(open_clip, spec, arch, tag)
    except (OSError, RuntimeError) as exc:
        if spec.random_weights or tag is None:
            raise ConfigError(f"model spec '{spec}': {first_line(exc)}") from None
        what, place = weights_location(open_clip, arch, tag)
        raise weights_unavailable(spec, what, place, exc) from None
    clip.eval()
    return OpenClipBackbone(clip, arch)

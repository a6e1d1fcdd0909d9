"""``soup``: model soups over one seed's fine-tuning grid (Wortsman et al., *Model soups:
averaging weights of multiple fine-tuned models improves accuracy without increasing inference
time*, ICML 2022).

The ingredients are every successful candidate of ``base`` (FT by default) for the seed: the
whole learning-rate grid, all started from the same pretrained network. The *uniform* soup
averages them all; the *greedy* soup takes them in order of ID val accuracy (best first) and
keeps each one whose addition does not lower the soup's ID val accuracy. Every floating-point
tensor is averaged, BatchNorm statistics included. No training of its own; the recipe is
selected on ID val like any hyperparameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from lpft.errors import ConfigError
from lpft.io import atomic_torch_save
from lpft.methods.base import Available, Candidate, Method, MethodContext, Network, Selected
from lpft.models.backbone import Classifier
from lpft.registry import METHODS, method_base_name
from lpft.training.distributed import is_main_process
from lpft.training.evaluate import accuracy
from lpft.training.features import forward_split
from lpft.validation import StrictModel, distinct

Recipe = Literal["uniform", "greedy"]
State = dict[str, torch.Tensor]


class SoupOptions(StrictModel):
    """Weight averages of the fine-tuned networks of one seed's grid."""

    base: str = "ft"
    recipes: list[Recipe] = Field(default_factory=lambda: ["uniform", "greedy"], min_length=1)

    @field_validator("recipes")
    @classmethod
    def _unique(cls, recipes: list[str]) -> list[str]:
        return distinct(recipes)

    @field_validator("base")
    @classmethod
    def _fine_tuned_method(cls, base: str) -> str:
        name = method_base_name(base)
        if name in ("lp", "soup"):
            raise ValueError(f"base must be a method that fine-tunes a network, not '{base}'")
        if name not in METHODS.names():
            raise ValueError(f"unknown method '{base}' (valid: {', '.join(METHODS.names())})")
        return base


def average(states: list[State]) -> State:
    """The mean of every floating-point tensor (a single state is returned unchanged); other
    tensors (BatchNorm's batch counters) are taken from the first state."""
    first = states[0]
    return {
        key: torch.stack([s[key] for s in states]).mean(dim=0)
        if value.is_floating_point()
        else value
        for key, value in first.items()
    }


def soup_file(recipe: str) -> str:
    return f"soup-{recipe}.pt"


@METHODS.register("soup")
class Soup(Method):
    name = "soup"
    options_model = SoupOptions

    def requirements(self, options: SoupOptions) -> tuple[str, ...]:
        return (options.base,)

    def cells(self, options: SoupOptions) -> list[dict[str, float]]:
        return [{}]

    def sweep_axes(self, options: SoupOptions) -> tuple[str, ...]:
        return ("recipe",)

    def fit(
        self,
        ctx: MethodContext,
        options: SoupOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        pool = sorted(required[options.base].available, key=lambda a: -a.candidate.id_val)
        states = [ingredient_state(options, a) for a in pool]
        scorer = ValScorer(ctx)
        candidates = []
        for index, recipe in enumerate(options.recipes):
            if recipe == "uniform":
                chosen = list(range(len(states)))
                score = scorer(average(states))
            else:
                chosen, score = greedy(states, scorer)
            if is_main_process():
                atomic_torch_save(
                    Path(cell_dir) / soup_file(recipe), average([states[i] for i in chosen])
                )
            candidates.append(
                Candidate(
                    hparams={"recipe": recipe},
                    id_val=score,
                    kind="model",
                    artifact=soup_file(recipe),
                    index=index,
                    info={"ingredients": [pool[i].candidate.hparams for i in chosen]},
                )
            )
        return candidates

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[Network]:
        for candidate in candidates:
            state = torch.load(
                Path(cell_dir) / candidate.artifact, map_location="cpu", weights_only=True
            )
            yield Network(network(ctx, state))

    def release(self, cell_dir: Path, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            (Path(cell_dir) / candidate.artifact).unlink(missing_ok=True)

    def describe(self, options: SoupOptions) -> dict[str, str]:
        return {
            "batchnorm": "averaged",
            "grid": "recipe: " + ", ".join(options.recipes),
            "base": options.base,
        }


def greedy(states: list[State], scorer: ValScorer) -> tuple[list[int], float]:
    """Indices of the greedy soup's ingredients (``states`` sorted best first) and its ID val."""
    chosen = [0]
    best = scorer(states[0])
    for index in range(1, len(states)):
        trial = scorer(average([states[i] for i in [*chosen, index]]))
        if trial >= best:
            chosen.append(index)
            best = trial
    return chosen, best


def ingredient_state(options: SoupOptions, available: Available) -> State:
    predictor = available.load()
    if not isinstance(predictor, Network):
        raise ConfigError(
            f"soup: base '{options.base}' predicts with a {type(predictor).__name__}, "
            "not a network to average"
        )
    return {k: v.detach().cpu().clone() for k, v in predictor.model.state_dict().items()}


def network(ctx: MethodContext, state: State) -> Classifier:
    model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    model.load_state_dict(state)
    return model.to(ctx.device).eval()


class ValScorer:
    """ID val accuracy of a network given by its state."""

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.loader = ctx.eval_loader("id_val")

    def __call__(self, state: State) -> float:
        model = network(self.ctx, state)
        outputs = forward_split(
            model.backbone,
            self.loader,
            self.ctx.device,
            model.head,
            autocast_dtype=self.ctx.autocast_dtype,
        )
        return accuracy(outputs.logits, outputs.labels)

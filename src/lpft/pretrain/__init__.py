"""Pretraining recipes for the backbones that ship with lpft."""

from lpft.pretrain.recipes import RECIPES, Recipe
from lpft.pretrain.train import pretrain, pretraining_arrays, train_backbone

__all__ = ["RECIPES", "Recipe", "pretrain", "pretraining_arrays", "train_backbone"]

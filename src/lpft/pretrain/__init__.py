"""Pretraining recipes for the backbones that ship with lpft (``lpft.pretrain.train`` runs them)."""

from lpft.pretrain.recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe"]

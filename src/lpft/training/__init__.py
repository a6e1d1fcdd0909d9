"""What methods use: the fine-tuning loop, the LP path solver, loaders, features, runtime."""

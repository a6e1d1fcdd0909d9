"""What drives methods: the runner (fit, select, evaluate), its context, run directory, results."""

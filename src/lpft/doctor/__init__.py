"""``lpft doctor``: which transfer method to use (LP, LP-FT, WiSE-FT or FT), decided from ID
labels and unlabeled target images by cheap probes and the paper's feature-distortion analysis.

``probes`` fits the probes, ``indicators`` measures, ``verdict`` reads the measurements into a
recommendation, ``diagnose`` ties them together; ``theory`` applies the same rule to the
two-layer linear simulator, where the winner is known.
"""

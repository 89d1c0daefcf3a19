"""Reconstruction backends: `base.py` is the one interface (`ReconstructionBackend`), `depth.py` and `sam3d.py`
implement it, `factory.py` picks one by name."""

"""simplenn: MatConvNet's vl_simplenn and companions (chains of vlnn blocks).

The driver, the model files and the trainer arrive with their own issues;
this package depends on :mod:`vlnn`, never the other way round.
"""

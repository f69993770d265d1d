"""Drop-in adapters for code written against other ZeroProofML releases.

- :mod:`zp_ref.compat.legacy`: the legacy ZeroProofML training API
  (``zeroproof.training.sampling_diagnostics``, ``CurriculumScheduler``,
  ``HybridGradientSchedule``), so legacy code runs with only its import line changed.
- :mod:`zp_ref.compat.zeroproofml`: zeroproofml 0.6.1's ``AdaptiveSampler``.

Both are thin adapters over the zp_ref core and import torch; import the submodule you
need (nothing is imported here). Differences from the originals: docs/differences.md.
"""

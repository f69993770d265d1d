"""Configuration of the model-driven learner (:mod:`zp_ref.model_driven`): a frozen
dataclass whose defaults were fixed a priori, each with its reason, validated when it is
built (ValueError/TypeError naming the field)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._validation import check_choice, check_count, check_real
from .bands import check_edges

__all__ = ["ModelDrivenConfig", "Q_SIGNALS", "GROWTHS", "SCHEDULES", "AUTO_REFRESH_ROWS",
           "AUTO_REFRESH_MIN_POOL"]

Q_SIGNALS = ("distance", "quantile", "labels", "none")
#: ``refresh_rows="auto"``: a partial refresh of this many rows on a pool of at least
#: ``AUTO_REFRESH_MIN_POOL`` rows, a full refresh below (docs/training_study.md, "The
#: partial refresh on a large pool": the pool and the rows of its fifth run).
AUTO_REFRESH_ROWS, AUTO_REFRESH_MIN_POOL = 4096, 1 << 18
GROWTHS = ("model", "poles", "uniform")
SCHEDULES = ("none", "bands")


@dataclass(frozen=True)
class ModelDrivenConfig:
    """Configuration of :class:`ModelDrivenLearner`. The defaults were fixed a priori,
    from the literature and first principles, before any study result existed.

    Parameters
    ----------
    floor : float, default 0.5
        Uniform floor: at least ``floor`` of every batch is uniform, so every pool point
        keeps probability >= floor / N and likelihood ratios stay <= 1 / floor = 2.
        RAD (Wu et al. 2023) draws with density ``loss^k / mean(loss^k) + c`` and finds
        ``k = 1, c = 1`` robust; c = 1 is half the mass uniform. A floor is also the
        defensive mixture of importance sampling (Hesterberg 1995): the variance can be
        at most 1 / floor times uniform's, whatever the signal says.
    q_signal, q_power, distance_clip : str, float, float, default "distance", 1.0, 1.0
        The model's Q enters through the first-order distance to its pole set,
        ``|Q_m| / |grad_x Q_m|``: invariant when the model multiplies P and Q by a
        constant (``implicit_loss`` is), unlike |Q_m|. Density ``1 / distance^1``
        puts equal mass in every decade of distance (equal draws per |Q| band near a
        simple pole, where |Q| grows linearly), floored at ``distance_clip`` times the
        pool spacing ``h = (box volume / N)^(1/d)`` (closer than the pool can resolve).
        ``"quantile"``: the rank of |Q_m| over the pool instead (no gradient needed),
        the same density for a uniform pool. ``"labels"`` (added for the study's ninth
        run, docs/training_study.md; needs one label per pool row, ``y_pool``): the
        distance to the target's own poles as the labels show them instead of the
        model's, in pool spacings: to the nearest centre of the sign changes of y
        between neighbouring pool points with ``|y|`` large at both ends
        (:func:`zp_ref.model_driven_growth.pole_distances`). It cannot point at a pole
        the data lacks, nor miss one of odd order that the data has.
    loss_power, loss_cap : float, default 1.0, 100.0
        RAD's k = 1: the loss signal is ``loss / sum(loss)``, capped so that no single
        point takes more than ``loss_cap / N`` (100x its uniform share) of the loss mass:
        ``min(loss, c)`` at the water-filling level c
        (:func:`zp_ref.model_driven_gate.loss_cap_level`). A pole target's squared error
        can be 1e10x the mean at one point, which RAD's bounded PDE residuals never are;
        100 is ImportanceSamplerConfig's max_weight.
    loss_warmup : int, default 1
        The loss signal is used from the ``loss_warmup``-th refresh on (0: from the
        first). The first refresh runs when the sampler is built, usually before any
        training step; a model that starts with output ~0 (zeroproofml's heads: P ~
        N(0, 0.01^2)) then has the loss of predicting 0, a function of the label alone
        (``y^2`` for ``implicit_loss`` and MSE): RAD would draw by ``|y|^2`` on pole data, not
        by the model's error (docs/training_study.md, "Diagnosis and confirmation run").
        RAD itself resamples only after a first training phase on uniform points.
    q_share, loss_share, refine_share : float, default 1.0
        The non-uniform mass is split between the signals present in these proportions
        (renormalised over the signals that are on). Equal shares: nothing a priori says
        which signal is right, and the model's Q can only point at poles the model
        already has, while the loss points at those it lacks; with both on, neither
        signal can take more than half of the non-uniform mass (a quarter of a batch).
    refresh_every : int, default 1
        The signal should follow the model; a refresh is measured to cost a small part of
        an epoch (benchmarks/bench_model_driven.py); no a-priori reason to let it lag.
    refresh_rows : int or "auto", default "auto"
        ``0``: every refresh evaluates the whole pool. ``"auto"`` (the default since the
        study's fifth run, docs/training_study.md): 0 on a pool of fewer than
        ``AUTO_REFRESH_MIN_POOL = 2**18`` rows (every pool the study's other runs used),
        ``AUTO_REFRESH_ROWS = 4096`` on a larger one (at 10**6 rows a full refresh costs
        7.5-29 epochs of the study's model, a partial one 0.30-0.33), and 0 with
        ``variance_gate > 0``. ``refresh_rows = M > 0`` (added after the
        benchmark, for large pools): after the first refresh, evaluate only M rows: the
        M/2 holding the most model-driven mass and the next M/2 of a round-robin sweep
        (every row is re-evaluated every 2N/M refreshes); the others keep their values.
        With the distance and loss signals (no bands, refinement or growth) the signals'
        weights are then kept as sum trees and a refresh updates the M rows only,
        O(M log N) (:mod:`zp_ref.model_driven_mixture`, which defines the draws then).
    refine, refine_criterion, refine_initial_cells : bool, str, int, default False, "sign", 1024
    max_refinement_level, max_grid_points, refine_neighbours : int, default 10, 20000, 8
        Refining the model's Q is opt-in (without new labels it mostly re-finds the poles
        the distance signal already sees). ``"sign"`` is scale-free; ~1024 initial cells
        split over the axes, 10 levels (1-D cells 2**-10 of the initial width), a point
        cap that bounds the cost; the mass of each refined cell goes to its 8 nearest
        pool points.
    label_budget, growth, growth_loss_share : int, str, float, default 0, "model", 0.5
        No pool growth unless asked for. With ``y_fn``: half the new points around the
        highest-loss pool points (radius: the distance to their nearest pool
        neighbour), half inside the refined cells (all around high-loss points without
        ``refine``); ``growth="uniform"``: as many uniform points in the box (a control);
        ``growth="poles"`` (opt-in, one label per pool row; added for the study's eighth
        run, where it gained no more than "model" and was not safe under SCMTrainer):
        the refined cells' half goes to the target's own poles, sign changes of the
        labels with ``|y|`` large at both ends, cut fivefold per refresh and surrounded by
        points at log-uniform distances (:mod:`zp_ref.model_driven_growth`).
    schedule, band_edges : str, tuple, default "none", (1e-3, 1e-2, 1e-1)
    band_plateau, band_max_refreshes : float, int, default 0.9, 5
        The band curriculum is opt-in; see docs/curriculum.md, "Model-driven bands".
    variance_gate : float, default 0.0
        Katharopoulos & Fleuret (2018)'s gate (:mod:`zp_ref.model_driven_gate`), off at
        0. At a refresh with the loss signal on, with ``G_i = sqrt(loss_i)`` (a
        squared-error loss's gradient with respect to the output is proportional to the
        residual: their loss-based upper bound) and m the epoch's probabilities, the
        estimated speed-up is ``tau = sum(G^2) / sum(G^2 / (N m))`` (1 for uniform m);
        ``tau < variance_gate``: the draws until the next refresh are uniform (likelihood
        ratios 1). Off by default: issue 22 keeps it only if the study supports it, and
        the study had not run when it was added. The study's arm ``model_driven_gate``
        uses 1.0: importance stays on only while it is estimated to lower the
        gradient's second moment at all (K&F's cost term ``(B + 3b) / (3b)`` is 1 here:
        the refresh has already paid for the scores). Needs the loss signal; refused
        with ``refresh_rows > 0`` (the estimate needs every row's current loss, which a
        partial refresh does not hold, and an O(N) sum would undo its O(M log N) cost).
    """
    floor: float = 0.5
    q_signal: str = "distance"
    q_power: float = 1.0
    distance_clip: float = 1.0
    loss_power: float | None = 1.0
    loss_cap: float = 100.0
    loss_warmup: int = 1
    q_share: float = 1.0
    loss_share: float = 1.0
    refine_share: float = 1.0
    refresh_every: int = 1
    refresh_rows: int | str = "auto"
    refine: bool = False
    refine_criterion: str = "sign"
    refine_initial_cells: int = 1024
    max_refinement_level: int = 10
    max_grid_points: int = 20000
    refine_neighbours: int = 8
    label_budget: int = 0
    growth: str = "model"
    growth_loss_share: float = 0.5
    schedule: str = "none"
    band_edges: tuple = (1e-3, 1e-2, 1e-1)
    band_plateau: float = 0.9
    band_max_refreshes: int = 5
    variance_gate: float = 0.0

    def __post_init__(self):
        check_real(self.floor, "floor", low=0.0, high=1.0, low_open=True)
        check_choice(self.q_signal, "q_signal", Q_SIGNALS)
        check_real(self.q_power, "q_power", low=0.0, low_open=True)
        check_real(self.distance_clip, "distance_clip", low=0.0, low_open=True)
        if self.loss_power is not None:
            check_real(self.loss_power, "loss_power", low=0.0)
        check_real(self.loss_cap, "loss_cap", low=1.0)
        check_count(self.loss_warmup, "loss_warmup")
        for name in ("q_share", "loss_share", "refine_share"):
            check_real(getattr(self, name), name, low=0.0)
        check_count(self.refresh_every, "refresh_every", minimum=1)
        if not isinstance(self.refresh_rows, str):
            check_count(self.refresh_rows, "refresh_rows")
        elif self.refresh_rows != "auto":
            raise ValueError(f"refresh_rows must be 'auto' or a count >= 0, got "
                             f"{self.refresh_rows!r}")
        if not isinstance(self.refine, (bool, np.bool_)):
            raise TypeError(f"refine must be True or False, got {self.refine!r}")
        check_choice(self.refine_criterion, "refine_criterion", ("sign", "abs_or_sign"))
        for name, low in (("refine_initial_cells", 1), ("max_refinement_level", 0),
                          ("max_grid_points", 1), ("refine_neighbours", 1), ("label_budget", 0)):
            check_count(getattr(self, name), name, minimum=low)
        check_choice(self.growth, "growth", GROWTHS)
        check_real(self.growth_loss_share, "growth_loss_share", low=0.0, high=1.0)
        check_choice(self.schedule, "schedule", SCHEDULES)
        e = check_edges(self.band_edges, "band_edges")
        if e[0] <= 0 or e[-1] >= 1:
            raise ValueError(f"band_edges must be pool fractions in (0, 1), got {e.tolist()}")
        check_real(self.band_plateau, "band_plateau", low=0.0, high=1.0, low_open=True)
        check_count(self.band_max_refreshes, "band_max_refreshes", minimum=1)
        check_real(self.variance_gate, "variance_gate", low=0.0)
        if self.variance_gate and self.refresh_rows_for(AUTO_REFRESH_MIN_POOL):
            raise ValueError(f"variance_gate={self.variance_gate} needs refresh_rows=0 (the gate "
                             f"estimates over the whole pool's loss), got refresh_rows="
                             f"{self.refresh_rows}; set one of them to 0")
        if self.variance_gate and not self.uses_loss:
            raise ValueError(f"variance_gate={self.variance_gate} needs the loss signal "
                             f"(loss_power > 0 and loss_share > 0), got loss_power="
                             f"{self.loss_power!r}, loss_share={self.loss_share}")
        if self.schedule == "bands" and self.q_signal == "none":
            raise ValueError("schedule='bands' needs q_signal 'distance' or 'quantile' (the "
                             "bands are quantiles of the model's signal), got q_signal='none'")

    def refresh_rows_for(self, n_pool: int) -> int:
        """The rows M a refresh of a pool of ``n_pool`` rows evaluates after the first
        (0: all of them): ``refresh_rows``, with "auto" resolved."""
        if self.refresh_rows != "auto":
            return int(self.refresh_rows)
        if self.variance_gate or n_pool < AUTO_REFRESH_MIN_POOL:
            return 0
        return AUTO_REFRESH_ROWS

    @property
    def uses_loss(self) -> bool:
        return bool(self.loss_power) and self.loss_share > 0

    @property
    def uses_q(self) -> bool:
        return self.q_signal != "none" and self.q_share > 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["band_edges"] = list(out["band_edges"])
        return out

"""The tenth to fourteenth runs of the training study (docs/training_study.md, "Uniform
draws inside the bands"): the label and pole curricula drawing uniformly inside each |Q|
band, their replication on a second set of fresh seeds, a wider far floor, the curricula
without a floor under the cosine decay, the floored one under SCMTrainer, and the labels'
curriculum on a pool grown at the labels' poles, each with its rule fixed before its runs
(:func:`zp_ref.apps.study_select.choose` and :func:`~zp_ref.apps.study_select.is_safe`)."""
from __future__ import annotations

import dataclasses

from .study import StudyConfig
from .study_select import (_in_every_cell, _judge_fixed_pool, _run_judged, b1_b2,
                           cell_scores, cells_at_3x, geometric_gain, is_safe, pd_ratio,
                           scm_arm_scores)

__all__ = ["WITHIN_ARMS", "WITHIN_CANDIDATES", "WITHIN_SEEDS", "within_config",
           "judge_within", "run_within", "REPLICATION_ARMS", "REPLICATION_CANDIDATES",
           "REPLICATION_SEEDS", "judge_replication", "run_replication", "FLOOR70_ARMS",
           "FLOOR70_SEEDS", "judge_floor70", "run_floor70", "COSINE_ARMS", "COSINE_CANDIDATES",
           "COSINE_SEEDS", "cosine_config", "judge_cosine", "run_cosine", "SCM_LABELS_ARMS",
           "SCM_LABELS_SEEDS", "scm_labels_config", "judge_scm_labels", "run_scm_labels",
           "GROW_LABELS_ARMS", "GROW_LABELS_SEEDS", "grow_labels_config", "judge_grow_labels",
           "run_grow_labels"]


# ------------------------------------------------------------------ the tenth run
#: The tenth run (docs/training_study.md, "Uniform draws inside the bands"): the label and
#: pole curricula drawing uniformly inside each band (``curriculum_within="uniform"``;
#: ``"importance"`` draws ``1/Q^2`` there, which puts the far band's draws at its near
#: edge) against uniform batches, the fixed-pool recommendation (``model_driven_sqerr``,
#: which draws no band) and the true-Q curriculum, with the study's model.
WITHIN_ARMS = ("uniform", "curriculum", "curriculum_labels", "curriculum_labels_floor",
               "curriculum_poles", "curriculum_poles_floor", "model_driven_sqerr")
WITHIN_CANDIDATES = ("model_driven_sqerr", "curriculum_labels_floor", "curriculum_labels",
                     "curriculum_poles_floor", "curriculum_poles")
WITHIN_SEEDS = (45, 5)

#: Its replication on a second set of fresh seeds: the chosen arm against uniform and the
#: previous fixed-pool recommendation, judged by the same rule.
REPLICATION_ARMS = ("uniform", "curriculum_labels_floor", "model_driven_sqerr")
REPLICATION_CANDIDATES = ("model_driven_sqerr", "curriculum_labels_floor")
REPLICATION_SEEDS = (50, 5)


def within_config(targets=None, arms: tuple = WITHIN_ARMS) -> StudyConfig:
    """The tenth and eleventh runs: the full study's budget with ``arms``
    (:data:`WITHIN_ARMS`, :data:`REPLICATION_ARMS` or :data:`FLOOR70_ARMS`) under both
    schedules with the study's model only, the curricula drawing uniformly inside each
    band (``targets``: a subset, to share the run)."""
    cfg = _in_every_cell(arms, targets)
    return dataclasses.replace(cfg, zeroproofml_methods=(),
                               curriculum_within="uniform").validate()


def judge_within(report: dict) -> dict:
    """The rule, fixed before the runs, on the tenth run's report: the development run's
    ``choose`` over :data:`WITHIN_CANDIDATES` against uniform, over the same 8 cells. A
    chosen curriculum becomes the recommendation for a fixed pool with one label per row
    (``within="uniform"``; docs/torch.md); the library's defaults stay. Reported as in
    ``judge_labels``."""
    return _judge_fixed_pool(report, WITHIN_CANDIDATES)


def run_within(out="runs/within", targets=None, progress=True) -> dict:
    """Run the tenth run into ``out`` (resumable, seeds :data:`WITHIN_SEEDS`); with every
    target, write ``out/judgement.json`` (:func:`judge_within`) and return it, else return
    the study report."""
    return _run_judged(out, WITHIN_SEEDS, within_config(targets), judge_within,
                       StudyConfig.full().targets, targets, progress)


def judge_replication(report: dict) -> dict:
    """The rule, fixed before the runs, on the replication's report: ``choose`` over
    :data:`REPLICATION_CANDIDATES` against uniform. The tenth run's recommendation stands
    when ``curriculum_labels_floor`` is safe here too; otherwise docs/torch.md says that
    it was not safe on the second set. Reported as in ``judge_labels``."""
    return _judge_fixed_pool(report, REPLICATION_CANDIDATES)


def run_replication(out="runs/within_replication", targets=None, progress=True) -> dict:
    """Run the replication into ``out`` (resumable, seeds :data:`REPLICATION_SEEDS`); with
    every target, write ``out/judgement.json`` (:func:`judge_replication`) and return it,
    else return the study report."""
    return _run_judged(out, REPLICATION_SEEDS, within_config(targets, REPLICATION_ARMS),
                       judge_replication, StudyConfig.full().targets, targets, progress)


# ------------------------------------------------------------------ a wider far floor
#: The eleventh run: the labels' curriculum with 70 % of every stage on the far band
#: (``curriculum_labels_floor70``, uniform inside the bands) against uniform on two sets of
#: fresh seeds, each judged alone by :func:`is_safe`.
FLOOR70_ARMS = ("uniform", "curriculum_labels_floor70")
FLOOR70_SEEDS = ((55, 5), (60, 5))


def judge_floor70(reports: list) -> dict:
    """The rule, fixed before the runs, on the eleventh run's two reports (seeds 55-59 and
    60-64): ``curriculum_labels_floor70`` replaces the 0.5 floor in the fixed-pool
    recommendation when it is safe on each set alone. {"scores": per set, "gains": per
    set, "safe": per set, "recommended": bool}."""
    scores = [cell_scores(r, r, "curriculum_labels_floor70") for r in reports]
    safe = [is_safe(v) for v in scores]
    return {"scores": scores, "gains": [geometric_gain(v) for v in scores], "safe": safe,
            "recommended": all(safe)}


def run_floor70(out="runs/floor70", targets=None, progress=True) -> dict:
    """Run the eleventh run into ``out/seeds_55`` and ``out/seeds_60`` (resumable); with
    every target, write ``out/judgement.json`` (:func:`judge_floor70`) and return it,
    else return ``{"reports": [the two study reports]}``."""
    return _run_judged(out, FLOOR70_SEEDS, within_config(targets, FLOOR70_ARMS), judge_floor70,
                       StudyConfig.full().targets, targets, progress)


# ------------------------------------------------------------------ the cosine decay
#: The twelfth run: the label and pole curricula without a floor (uniform inside the
#: bands) under the cosine decay alone, against uniform and the fixed-pool recommendation
#: (``curriculum_labels_floor70``), on two sets of fresh seeds. In the tenth run (seeds
#: 45-49) their far field was within 1.34x of uniform's in the cosine cells but for
#: ``curriculum_poles`` on ``three_poles_1d`` (1.68x), and 16x worse on ``spurious_1d`` at
#: a constant rate.
COSINE_ARMS = ("uniform", "curriculum_labels", "curriculum_poles", "curriculum_labels_floor70")
COSINE_CANDIDATES = ("curriculum_labels", "curriculum_poles")
COSINE_SEEDS = ((65, 5), (70, 5))


def cosine_config(targets=None, arms: tuple = COSINE_ARMS) -> StudyConfig:
    """The twelfth run: :func:`within_config` with ``arms`` under the cosine decay alone."""
    return dataclasses.replace(within_config(targets, arms), lr_schedules=("cosine",)).validate()


def judge_cosine(reports: list) -> dict:
    """The rule, fixed before the runs, on the twelfth run's two reports (seeds 65-69 and
    70-74, the cosine cells): a candidate of :data:`COSINE_CANDIDATES` is safe when
    :func:`is_safe` holds on each set alone; the safe candidate with the largest geometric
    gain over the cells of both sets (ties: the earlier) becomes the recommendation for a
    fixed pool trained with a cosine decay, ``None`` when neither is safe. Reported for
    every arm but uniform: the scores, gains and cells at the issue's 3x per set, and
    ``pooled``, the geometric gain over both sets. {"scores", "gains", "pooled", "safe",
    "at_3x", "chosen"}."""
    arms = [a for a in COSINE_ARMS if a != "uniform"]
    scores = {a: [cell_scores(r, r, a) for r in reports] for a in arms}
    pooled = {a: geometric_gain({f"{i} {cell}": v for i, s in enumerate(scores[a])
                                 for cell, v in s.items()}) for a in arms}
    safe = {a: all(is_safe(s) for s in scores[a]) for a in arms}
    ok = [a for a in COSINE_CANDIDATES if safe[a]]
    return {"scores": scores, "gains": {a: [geometric_gain(s) for s in scores[a]] for a in arms},
            "pooled": pooled, "safe": safe,
            "at_3x": {a: [cells_at_3x(r, r, a) for r in reports] for a in arms},
            "chosen": max(ok, key=lambda a: (pooled[a], -COSINE_CANDIDATES.index(a)))
            if ok else None}


def run_cosine(out="runs/cosine", targets=None, progress=True) -> dict:
    """Run the twelfth run into ``out/seeds_65`` and ``out/seeds_70`` (resumable); with
    every target, write ``out/judgement.json`` (:func:`judge_cosine`) and return it, else
    return ``{"reports": [the two study reports]}``."""
    return _run_judged(out, COSINE_SEEDS, cosine_config(targets), judge_cosine,
                       StudyConfig.full().targets, targets, progress)


# ------------------------------------------------------------------ under SCMTrainer
#: The thirteenth run: the fixed-pool recommendation (``curriculum_labels_floor70``,
#: uniform inside the bands) with zeroproofml's models under SCMTrainer (constant rate, its
#: default), against uniform and the SCMTrainer recommendation (``model_driven_sqerr``),
#: on ten fresh seeds judged together, as in the seventh run.
SCM_LABELS_ARMS = ("uniform", "model_driven_sqerr", "curriculum_labels_floor70")
SCM_LABELS_SEEDS = (75, 10)


def scm_labels_config(targets=None) -> StudyConfig:
    """The thirteenth run: the full study's budget, :data:`SCM_LABELS_ARMS` with
    zeroproofml's models under SCMTrainer only, the curricula drawing uniformly inside each
    band (``targets``: a subset of the two, to share the run between processes)."""
    full = StudyConfig.full()
    return dataclasses.replace(full, methods=(), constant_methods=(),
                               zeroproofml_methods=SCM_LABELS_ARMS,
                               targets=tuple(targets or full.zeroproofml_targets),
                               curriculum_within="uniform").validate()


def judge_scm_labels(report: dict) -> dict:
    """The rule, fixed before the runs, on the thirteenth run's report: the fixed-pool
    recommendation holds under SCMTrainer too (docs/torch.md) when
    ``curriculum_labels_floor70`` is safe (:func:`is_safe`) over its cells;
    ``model_driven_sqerr`` is reported beside it, not judged again.
    {"arms": :func:`~zp_ref.apps.study_select.scm_arm_scores`, "recommended": bool}."""
    arms = scm_arm_scores(report, SCM_LABELS_ARMS[1:])
    return {"arms": arms, "recommended": arms["curriculum_labels_floor70"]["safe"]}


def run_scm_labels(out="runs/scm_labels", targets=None, progress=True) -> dict:
    """Run the thirteenth run into ``out`` (resumable, seeds :data:`SCM_LABELS_SEEDS`);
    with both targets, write ``out/judgement.json`` (:func:`judge_scm_labels`) and return
    it, else return the study report."""
    return _run_judged(out, SCM_LABELS_SEEDS, scm_labels_config(targets), judge_scm_labels,
                       StudyConfig.full().zeroproofml_targets, targets, progress)


# ------------------------------------------------------------------ a growing pool
#: The fourteenth run: the labels' curriculum without a floor under the cosine decay (the
#: twelfth run's recommendation) on a pool grown by ``label_budget`` labels per epoch at
#: the labels' pole brackets (``curriculum_labels_grow``), against its control (the same
#: number of uniform new points), the same curriculum on the fixed pool, the true-Q
#: curriculum and uniform batches, with the study's model.
GROW_LABELS_ARMS = ("uniform", "curriculum", "curriculum_labels", "curriculum_labels_grow",
                    "curriculum_labels_grow_uniform")
GROW_LABELS_SEEDS = (85, 5)


def grow_labels_config(targets=None) -> StudyConfig:
    """The fourteenth run: :func:`cosine_config` with :data:`GROW_LABELS_ARMS`."""
    return cosine_config(targets, GROW_LABELS_ARMS)


def judge_grow_labels(report: dict) -> dict:
    """The rule, fixed before the runs, on the fourteenth run's report:
    ``curriculum_labels_grow`` becomes the recommendation when the target can be labelled
    at new x and the learning rate decays, when it is safe against uniform
    (:func:`is_safe`) and at least as close to the poles as its control in every cell.
    Reported: ``scores`` and ``safe`` of both growing arms; per cell the pole-distance
    ratio to the control (``vs_control``), to the fixed-pool curriculum (``vs_fixed``) and
    to the true-Q curriculum (``vs_oracle``; the issue asks for at least 1/3 on the 1-D
    targets); ``b1_b2``, the mean B1 and B2 errors of every arm (the issue asks for both
    below 0.5 with new labels where every pool-only arm stays at 1.0). {"scores", "safe",
    "vs_control", "vs_fixed", "vs_oracle", "b1_b2", "recommended"}."""
    grow, control = GROW_LABELS_ARMS[3:]
    scores = {a: cell_scores(report, report, a) for a in (grow, control)}
    safe = {a: is_safe(v) for a, v in scores.items()}
    vs_control = pd_ratio(report, grow, control)
    return {"scores": scores, "safe": safe, "vs_control": vs_control,
            "vs_fixed": pd_ratio(report, grow, "curriculum_labels"),
            "vs_oracle": pd_ratio(report, grow, "curriculum"),
            "b1_b2": {a: b1_b2(report, a) for a in GROW_LABELS_ARMS},
            "recommended": bool(safe[grow] and all(r >= 1.0 for r in vs_control.values()))}


def run_grow_labels(out="runs/grow_labels", targets=None, progress=True) -> dict:
    """Run the fourteenth run into ``out`` (resumable, seeds :data:`GROW_LABELS_SEEDS`);
    with every target, write ``out/judgement.json`` (:func:`judge_grow_labels`) and return
    it, else return the study report."""
    return _run_judged(out, GROW_LABELS_SEEDS, grow_labels_config(targets), judge_grow_labels,
                       StudyConfig.full().targets, targets, progress)

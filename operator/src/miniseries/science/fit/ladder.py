"""Validate the loss laws on a published ladder: fit on its small models, predict its large ones.

The ladder is Gadre et al. 2024's testbed ("Language models scale reliably with over-training and
on downstream tasks", arXiv:2403.08540; mlfoundations/scaling exp_data, MIT): on three datasets
(C4, RedPajama, RefinedWeb) models of 11M to 411M parameters at token multipliers M = D/N of 5 to
640, and the targets they predicted from them, 1.4B runs (M = 20 and one over-trained run) and a
6.9B run at M = 20. The loss is each model's C4 validation loss, as the paper's fits use.

Each law form of `fit_chinchilla` (free exponents, Hoffmann et al.; one shared exponent, Gadre et
al.'s over-training form) is fitted, by the product's own code path, on every model up to
`FIT_MAX_PARAMS` of a dataset and asked for the loss of each held-out target; the error is
(predicted - actual) / actual. The form with the smaller mean |error| wins. The paper's own
accuracy on RedPajama: 0.71% (1.4B, M = 640) and 0.73% (6.9B, M = 20).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miniseries.science.fit.chinchilla import fit_chinchilla

#: Models up to this many parameters are fitted (the 411M models); the larger ones are the targets.
FIT_MAX_PARAMS = 5e8
#: The forms compared: fit_chinchilla's shared_exponent False / True.
FORMS = ("free", "shared")
#: Gadre et al.'s reported relative errors on RedPajama's two targets (their Figure 1 / Table 2).
PAPER_RPJ = {"rpj-open_lm_1b-32.0": 0.0071, "rpj-open_lm_7b-1.0": 0.0073}


@dataclass(frozen=True)
class LadderModel:
    dataset: str
    name: str
    params: float
    tokens: float
    loss: float


@dataclass
class Prediction:
    dataset: str
    target: str
    params: float
    tokens: float
    multiplier: float  # M = D / N
    actual: float
    predicted: dict[str, float]  # form -> loss
    error: dict[str, float]  # form -> (predicted - actual) / actual


@dataclass
class LadderValidation:
    ladder: str
    fit_max_params: float
    predictions: list[Prediction]
    fits: dict[str, dict[str, dict[str, float]]]  # dataset -> form -> the fitted parameters
    mean_abs_error: dict[str, float]  # form -> over every target of every dataset
    winner: str  # the form with the smaller mean |error|
    paper: dict[str, float] = field(default_factory=dict)  # target -> the paper's reported |error|

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_gadre(root: Path) -> list[LadderModel]:
    """Every model of the testbed (root: .../scaling/gadre2024) with its C4 validation loss."""
    models = []
    for path in sorted((root / "models").glob("*.json")):
        j = json.loads(path.read_text())
        h = j["hyperparameters"]
        c4 = [r["loss"] for r in j["results"] if "/c4_val/" in r["val_data"][0]]
        if not c4:
            raise ValueError(f"{path}: no C4 validation loss among its results")
        models.append(LadderModel(j["dataset_name"], j["name"], float(h["params"]), float(h["tokens"]), float(c4[0])))
    if not models:
        raise ValueError(f"{root}/models: no model files (*.json)")
    return models


def validate_ladder(
    models: list[LadderModel], *, ladder: str = "gadre2024", fit_max_params: float = FIT_MAX_PARAMS
) -> LadderValidation:
    """Fit each form on each dataset's models up to `fit_max_params`; predict the rest."""
    predictions: list[Prediction] = []
    fits: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in sorted({m.dataset for m in models}):
        rows = [m for m in models if m.dataset == dataset]
        small = [m for m in rows if m.params <= fit_max_params]
        targets = sorted((m for m in rows if m.params > fit_max_params), key=lambda m: (m.params, m.tokens))
        if not targets:
            continue
        n, d, loss = (np.array([getattr(m, k) for m in small]) for k in ("params", "tokens", "loss"))
        laws = {form: fit_chinchilla(n, d, loss, bootstrap=0, shared_exponent=form == "shared") for form in FORMS}
        fits[dataset] = {
            form: {k: getattr(f, k) for k in ("E", "A", "B", "alpha", "beta")} | {"points": f.points}
            for form, f in laws.items()
        }
        for t in targets:
            pred = {form: float(f.loss(t.params, t.tokens)) for form, f in laws.items()}
            predictions.append(Prediction(dataset, t.name, t.params, t.tokens, t.tokens / t.params, t.loss, pred,
                                          {form: (p - t.loss) / t.loss for form, p in pred.items()}))  # fmt: skip
    if not predictions:
        raise ValueError(f"no model larger than {fit_max_params:.3g} parameters to predict")
    mae = {form: float(np.mean([abs(p.error[form]) for p in predictions])) for form in FORMS}
    return LadderValidation(ladder, fit_max_params, predictions, fits, mae, min(mae, key=mae.__getitem__),
                            {k: v for k, v in PAPER_RPJ.items() if any(p.target == k for p in predictions)})  # fmt: skip


def render(v: LadderValidation) -> str:
    """The table: one row per target, the error of each form, the paper's where it reported one."""
    head = f"{'dataset':<12} {'target':<28} {'N':>8} {'D':>9} {'M':>5} {'actual':>7}"
    head += "".join(f" {form + ' pred':>11} {form + ' err':>10}" for form in FORMS) + "   paper"
    lines = [f"Ladder {v.ladder}: fitted on models <= {v.fit_max_params:.3g} params, predicting the larger ones "
             "(C4 validation loss)", head]  # fmt: skip
    for p in v.predictions:
        row = f"{p.dataset:<12} {p.target:<28} {p.params:>8.3g} {p.tokens:>9.3g} {p.multiplier:>5.0f} {p.actual:>7.4f}"
        row += "".join(f" {p.predicted[f]:>11.4f} {p.error[f]:>+10.2%}" for f in FORMS)
        row += f"   {v.paper[p.target]:.2%}" if p.target in v.paper else ""
        lines.append(row)
    lines.append("mean |error|: " + ", ".join(f"{f} {v.mean_abs_error[f]:.2%}" for f in FORMS)
                 + f"; the {v.winner} form predicts these runs better")  # fmt: skip
    return "\n".join(lines)

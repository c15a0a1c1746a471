"""`--explain`: the workflow's six steps told in plain sentences, on the run's own numbers.

The five training steps are shown on the first batch by a rehearsal: a copy of the model
and a fresh optimizer take that batch through `training.train_step`, the function the run
itself calls (forward, loss, zero_grad, backward and step, with the run's precision and
clipping), with every random generator put back afterwards. The real run then takes the
very same first step, so the numbers told are the numbers trained on. (`--compile` is left
out of the rehearsal: compiling a copy for one batch would cost more than many epochs.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptflow.config import Config
from ptflow.data import Splits
from ptflow.encoding import Encoding
from ptflow.tasks import task_of
from ptflow.training import (
    InMemory,
    LossFn,
    Step,
    StepOptions,
    batch_size_for,
    make_loss_fn,
    optimizer_for,
    random_states,
    set_random_states,
    train_step,
)

__all__ = [
    "describe_data",
    "describe_first_batch",
    "describe_model",
    "describe_result",
    "numbers",
    "values",
]

SHOWN = 3  # values shown of a tensor: enough to follow, few enough to read


def values(tensor: torch.Tensor) -> str:
    """A tensor in a few words: its shape and its first values."""
    return f"shape {tuple(tensor.shape)}: {numbers(tensor)}"


def numbers(tensor: torch.Tensor) -> str:
    """A tensor's first values, to four decimals."""
    flat = tensor.detach().flatten().cpu().tolist()
    shown = ", ".join(f"{value:.4f}" for value in flat[:SHOWN])
    return f"[{shown}{', ...' if len(flat) > SHOWN else ''}]"


def describe_data(
    cfg: Config,
    splits: Splits,
    features: tuple[str, ...],
    target: tuple[str, ...],
    encoding: Encoding | None = None,
) -> list[str]:
    """Step 1 in sentences: where the data comes from, its first rows, and the split."""
    rows = len(splits.train_indices) + len(splits.val_indices) + len(splits.test_indices)
    if cfg.line:
        source = (
            f"the straight line y = {cfg.weight}·X + {cfg.bias}, with X = "
            f"torch.arange({cfg.start}, {cfg.end}, {cfg.step}) as a column: {rows} rows"
        )
    elif cfg.circles:
        source = (
            f"two noisy circles, {rows} points (x1, x2) made after a seed of {cfg.seed}: "
            f"class 0 on the outer ring, class 1 on the inner one"
        )
    else:
        source = f"{cfg.data}: {rows} rows of {', '.join(features)} to predict {', '.join(target)}"
    X, y = splits.train
    classes = encoding.classes if encoding is not None else ()
    order = "shuffled (seeded), then cut" if cfg.shuffle else "in order: the first rows train"
    if classes:
        order += ", each class on its own (stratified), so every part holds each class"
        shown_y = f"class {classes[int(y[0, 0])]} (y = {int(y[0, 0])}, its number)"
    else:
        shown_y = f"y = {numbers(y[0])}"
    inputs = []
    if encoding is not None and encoding.width != len(features):
        inputs = [
            f"   The columns become {encoding.width} inputs ({', '.join(encoding.input_names)}), "
            f"fitted on the training rows only: a missing number is their median and sets its "
            f"was-missing input, a category is a code (0: unseen in training, 1: missing).",
        ]
    scaling = []
    if cfg.scale == "standard":  # step 4 shows the numbers the network sees, not these
        scaled = "each numeric input" + ("" if classes else " and the target")
        scaling = [
            f"   With --scale standard, training sees {scaled} standardised: minus the "
            f"training rows' mean, over their standard deviation; the saved model holds both "
            f"and applies them to raw rows when it predicts.",
        ]
    return [
        f"1. Data: {source}.",
        *inputs,
        f"   The first training row, as read, is X = {numbers(X[0])} with {shown_y}.",
        *scaling,
        f"   Split {order}: {len(splits.train_indices)} train, {len(splits.val_indices)} "
        f"validation, {len(splits.test_indices)} test rows; the model never trains on the "
        f"test rows.",
        _visualize(cfg, classes),
    ]


def _visualize(cfg: Config, classes: tuple[str, ...]) -> str:
    if cfg.line:
        return (
            "2. Visualize: once trained, the run draws the data (train blue, test green) and "
            "the predictions (red) before and after training."
        )
    if classes:
        return (
            "2. Visualize: once trained, the run draws the test rows' confusion matrix, ROC "
            "curve and calibration, and for one or two features the class predicted at "
            "each point."
        )
    return (
        "2. Visualize: once trained, the run draws the test rows' predictions against their "
        "targets."
    )


def describe_model(cfg: Config, network: nn.Module) -> list[str]:
    """Step 3 in sentences: the model and its parameters before training."""
    lines = [
        f"3. Model: {type(network).__name__}, built right after torch.manual_seed({cfg.seed}), "
        f"so its starting parameters are the same every run:"
    ]
    lines += [f"   {name} {values(value)}" for name, value in network.named_parameters()]
    return lines


def describe_first_batch(
    cfg: Config,
    network: nn.Module,
    splits: Splits,
    loss_fn: LossFn | None = None,
    classes: tuple[str, ...] = (),
    *,
    weight_decay: float | None = None,
) -> list[str]:
    """Step 4 in sentences: the five training steps on the first batch, with their values.

    A copy of the model takes `training.train_step`, the very function training runs (with
    the run's precision and clipping, and its `loss_fn`: by default the one `cfg` names),
    on the first batch, with the run's `weight_decay`; the generators are put back. With
    `classes`, the outputs are told as logits, their probabilities and cross-entropy.
    """
    saved = random_states()
    try:
        model = copy.deepcopy(network)
        loss_fn = loss_fn or make_loss_fn(cfg.loss, cfg.huber_delta)
        optimizer = optimizer_for(cfg, model, weight_decay)
        device = next(model.parameters()).device
        data = InMemory(splits, device)
        batch_size = batch_size_for(cfg, data.train_rows)
        X, y = next(iter(data.batches(batch_size, torch.Generator().manual_seed(cfg.seed))))
        model.train()
        before = {name: value.detach().clone() for name, value in model.named_parameters()}
        step = train_step(model, loss_fn, optimizer, X, y, StepOptions.of(cfg, device))
        lines = _five_steps(cfg, model, loss_fn, optimizer, (X, y), step, before, data)
        if classes:  # steps 1 and 2 on classes: logits, probabilities, cross-entropy
            lines[1:3] = _class_steps(cfg, step.y_pred, y, classes, step.loss)
        return lines
    finally:
        set_random_states(saved)


def _five_steps(
    cfg: Config,
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    step: Step,
    before: dict[str, torch.Tensor],
    data: InMemory,
) -> list[str]:
    X, y = batch
    whole = "all the training rows" if len(X) == data.train_rows else f"{len(X)} rows"
    # What the network sees: standardised where asked (classes swap lines 1 and 2 below,
    # and their targets, class numbers, are never standardised)
    scaled = " (standardised)" if cfg.scale == "standard" else ""
    bf16 = ", under torch.autocast(bfloat16)" if cfg.precision == "bf16" else ""
    lines = [
        f"4. Train: each epoch, model.train() and then, batch after batch, five steps. "
        f"Here they are on the first batch ({whole}, X{scaled} {values(X)}):",
        f"   1. Forward pass, y_pred = model(X){bf16}: {values(step.y_pred)}; "
        f"the targets y{scaled}: {values(y)}.",
        f"   2. Loss, {type(loss_fn).__name__}(y_pred, y) = {step.loss:.6f}"
        + (" (in standardised units)." if scaled else "."),
        "   3. optimizer.zero_grad() clears the gradients the last step left behind.",
        "   4. loss.backward() computes d(loss)/d(parameter) for every parameter"
        + (f", then clips their length to {cfg.clip_grad_norm}:" if cfg.clip_grad_norm else ":"),
    ]
    lines += [
        f"      {name}.grad {values(parameter.grad)}"
        for name, parameter in model.named_parameters()
        if parameter.grad is not None
    ]
    if not step.updated:
        lines.append("   The loss is not finite: training stops here, before step 5.")
        return lines
    lines.append(
        f"   5. optimizer.step() moves each parameter against its gradient "
        f"({type(optimizer).__name__}, lr {cfg.lr}):"
    )
    lines += [
        f"      {name} {numbers(before[name])} -> {numbers(value)}"
        for name, value in model.named_parameters()
    ]
    lines.append(
        f"   Then model.eval() and torch.inference_mode() for the {data.eval_split} loss, "
        f"and the same again for {cfg.epochs} epochs:"
    )
    return lines


def _class_steps(
    cfg: Config, logits: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...], loss: float
) -> list[str]:
    """Steps 1 and 2 for classes, on the first row: its logits, their probabilities, and
    the cross-entropy, -log of the true class's probability, which the loss averages."""
    bf16 = ", under torch.autocast(bfloat16)" if cfg.precision == "bf16" else ""
    first = logits[0].detach().float().cpu()
    true = int(y[0, 0])
    if len(classes) == 2:
        p = torch.sigmoid(first[0])
        shares = torch.stack([1 - p, p])
        turned = (
            f"one logit per row, for class {classes[1]}: p({classes[1]}) = "
            f"torch.sigmoid(logit) = {p.item():.4f} for the first row, so p({classes[0]}) = "
            f"{1 - p.item():.4f}"
        )
        loss_name = "BCEWithLogitsLoss (the sigmoid and the log in one stable step)"
    else:
        shares = torch.softmax(first, dim=0)
        turned = (
            f"a logit per class; torch.softmax(logits, dim=1) turns the first row's "
            f"{numbers(first)} into probabilities {numbers(shares)}, which sum to 1"
        )
        loss_name = "CrossEntropyLoss (the softmax and the log in one stable step)"
    weighted = "a weighted mean, by --class-weight" if cfg.class_weight != "none" else "the mean"
    smoothed = (
        f", with label smoothing {cfg.label_smoothing}"
        if cfg.label_smoothing and len(classes) > 2
        else ""
    )
    return [
        f"   1. Forward pass, logits = model(X){bf16}: {values(logits)}: {turned}.",
        f"   2. Loss, {loss_name} = {loss:.6f}: {weighted} over the rows of -log(the "
        f"probability given to the row's true class){smoothed}. The first row is class "
        f"{classes[true]}: -log({shares[true].item():.4f}) = "
        f"{-torch.log(shares[true]).item():.4f}.",
    ]


def describe_result(summary: dict[str, Any], cfg: Config, run_dir: Path) -> list[str]:
    """Steps 5, 2 and 6 in sentences: evaluation, the plots, what was saved in `run_dir`,
    and how to load it."""
    task = task_of(summary)
    test, baseline = summary["metrics"]["test"], summary["baseline_metrics"]["test"]
    headline = task.metrics[0]
    scores = ", ".join(f"{m.label} {_number(test[m.name])}" for m in task.metrics)
    lines = [
        "5. Evaluate: in eval mode under torch.inference_mode(), the test rows give "
        f"{scores}; the {task.baseline} baseline gives {headline.label} "
        f"{_number(baseline[headline.name])}.",
    ]
    if learned := summary.get("learned_parameters"):
        lines.append(
            f"   Learned weight {learned['weight']:.4f} and bias {learned['bias']:.4f}"
            + (f" (true {cfg.weight} and {cfg.bias})." if cfg.line else ".")
        )
    lines += [
        "   The plots and the loss curves are PNG files in the run folder, and report.html "
        "shows everything on one page.",
        "6. Save: model.pt holds the state_dict (torch.save), model.safetensors the same "
        "tensors without pickle.",
    ]
    load_run = f"ptflow.load_run({str(run_dir)!r})"
    # What a bare model of the architecture lacks: model.pt is then the Standardized
    # wrapper's state_dict, whose keys it refuses, or a table's inputs need its encoding.
    needs = ["the standardisation saved beside its weights"] if cfg.scale == "standard" else []
    if cfg.data is not None:
        needs.append("the columns' encoding (encoding.json)")
    if needs:
        lines.append(
            f"   Load it with run = {load_run}: it rebuilds the model (run.model) with "
            f"{' and '.join(needs)}, which a bare model's load_state_dict lacks"
            + ("; run.predict(FILE) predicts for a raw table." if cfg.data else ".")
        )
    else:
        lines.append(
            f"   Load it into a fresh model of the same shape with model.load_state_dict("
            f"torch.load(path, weights_only=True)), path the run's model.pt, or with "
            f"{load_run}.model."
        )
    return lines


def _number(value: Any) -> str:
    return f"{value:.6f}" if isinstance(value, float) else "undefined"

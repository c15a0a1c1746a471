"""The PyTorch workflow tutorial, step by step, through ptflow's library API.

    python examples/tutorial.py [--epochs 200] [--out tutorial_output]

Each step is one or two ptflow calls; open the module named in a comment to see the
plain PyTorch underneath. The script checks its own result, so it doubles as a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ptflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=200, help="passes over the data (default: 200)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("tutorial_output"), help="folder for files"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. Data (ptflow/data.py): a straight line y = 0.7 * X + 0.3 on 50 points,
    #    the first 80% for training and the last 20% for testing.
    weight, bias = 0.7, 0.3
    X, y = ptflow.make_linear_data(weight=weight, bias=bias, start=0.0, end=1.0, step=0.02)
    splits = ptflow.split(X, y, train_fraction=0.8)
    X_train, y_train = splits.train
    X_test, y_test = splits.test
    print(f"1. data: X {tuple(X.shape)}, {len(X_train)} training and {len(X_test)} test rows")

    # 2. Visualize (ptflow/plots.py): training data blue, test data green.
    ptflow.plot_predictions(X_train, y_train, X_test, y_test, path=args.out / "data.png")

    # 3. Build a model (ptflow/models.py): two nn.Parameters, drawn with torch.randn after
    #    torch.manual_seed(42), so they start at the tutorial's 0.3367 and 0.1288.
    model = ptflow.build_model("tutorial", seed=42)
    print(f"3. model before training: {dict(model.state_dict())}")
    y_preds = ptflow.predict(model, X_test)  # eval mode + torch.inference_mode()
    ptflow.plot_predictions(
        X_train, y_train, X_test, y_test, predictions=y_preds, path=args.out / "before.png"
    )

    # 4. Train (ptflow/training.py): each epoch runs forward, loss, zero_grad, backward,
    #    step in model.train() mode, then the test loss in model.eval() mode.
    cfg = ptflow.Config(epochs=args.epochs, lr=0.01, loss="l1", optimizer="sgd", seed=42)
    loss_fn = ptflow.make_loss_fn("l1")  # mean absolute error
    optimizer = ptflow.make_optimizer("sgd", model.parameters(), lr=0.01)
    history = ptflow.train(model, splits, cfg, loss_fn=loss_fn, optimizer=optimizer)
    print(
        f"4. trained {len(history)} epochs: train loss {history.train_loss[-1]:.4f}, "
        f"test loss {history.eval_loss[-1]:.4f}"
    )
    ptflow.plot_loss_curves(history, path=args.out / "loss_curves.png")

    # 5. Inference and evaluation (ptflow/evaluation.py).
    metrics = ptflow.evaluate(model, X_test, y_test)
    print(f"5. test MAE {metrics.mae:.4f}, RMSE {metrics.rmse:.4f}, R² {metrics.r2:.4f}")
    ptflow.plot_predictions(
        X_train,
        y_train,
        X_test,
        y_test,
        predictions=ptflow.predict(model, X_test),
        path=args.out / "after.png",
    )

    # 6. Save and load (ptflow/checkpoint.py): the state_dict into a fresh model.
    ptflow.save_weights(model, args.out / "model.pt")
    loaded_model = ptflow.load_weights(ptflow.build_model("tutorial"), args.out / "model.pt")
    same = torch.equal(ptflow.predict(loaded_model, X_test), ptflow.predict(model, X_test))
    print(f"6. saved and loaded {args.out / 'model.pt'}: identical predictions: {same}")

    # The tutorial's own target: the loss falls, and 200 epochs find the line within 0.01.
    learned_weight, learned_bias = model.weights.item(), model.bias.item()
    print(f"learned weight {learned_weight:.4f} (true {weight})")
    print(f"learned bias {learned_bias:.4f} (true {bias})")
    if not same:
        raise SystemExit("the loaded model predicts differently from the saved one")
    if history.eval_loss[-1] >= history.eval_loss[0]:
        raise SystemExit("the test loss did not fall during training")
    if args.epochs >= 200 and max(abs(learned_weight - weight), abs(learned_bias - bias)) > 0.01:
        raise SystemExit("200 epochs should bring weight and bias within 0.01 of the truth")


if __name__ == "__main__":
    main()

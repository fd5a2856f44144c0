"""Train the placeholder genre model on synthetic styles: ``python -m ml.train_genre``.

Renders ``ml/genre_styles.py`` clips (``TRAIN_SEEDS`` for fitting, ``VALIDATION_SEEDS`` held out),
computes ``audio.genre.window_features`` for each (one 10 s clip = one analysis window, exactly what
``audio.genre.classify`` sees), fits multinomial logistic regression with an L2 penalty on the
standardised features (L-BFGS from zeros, so the result is deterministic), prints the held-out
accuracy and confusion matrix and writes ``audio/models/genre-v1.npz``.

Why logistic regression: the features already encode what separates the archetypes (drums or not,
tempo band, sub-bass share, spectral shape); a linear model on them is small (a few KB), fast, easy
to inspect, and cannot memorise the synthetic sounds the way a bigger model could. Rendering and
feature extraction dominate the run time and are spread over ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import optimize

from audio.genre import DEFAULT_WEIGHTS, GenreModel, window_features
from ml.genre_styles import RATE, STYLES, TRAIN_SEEDS, VALIDATION_SEEDS, render

MODEL_NAME = "genre-v1 (synthetic styles)"
L2_PENALTY = 1e-2  # per example, on the standardised-feature weights (not the biases)


def _features_of(job: tuple[str, int]) -> np.ndarray:
    style, seed = job
    return window_features(render(style, seed), RATE)


def dataset(seeds: range, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (examples, features) and label indices for every style × seed."""
    jobs = [(style, seed) for style in STYLES for seed in seeds]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_features_of, jobs, chunksize=8))
    else:
        rows = [_features_of(job) for job in jobs]
    return np.array(rows), np.array([STYLES.index(style) for style, _ in jobs])


def _loss_and_gradient(theta: np.ndarray, x: np.ndarray, onehot: np.ndarray,
                       penalty: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(x W + b) plus the L2 penalty on W, and its gradient."""
    features, classes = x.shape[1], onehot.shape[1]
    weights, bias = theta[: features * classes].reshape(features, classes), theta[features * classes :]
    logits = x @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    n = len(x)
    loss = -np.sum(onehot * log_p) / n + 0.5 * penalty * np.sum(weights**2)
    residual = (np.exp(log_p) - onehot) / n
    gradient = np.concatenate([(x.T @ residual + penalty * weights).ravel(), residual.sum(axis=0)])
    return float(loss), gradient


def fit(features: np.ndarray, labels: np.ndarray, penalty: float = L2_PENALTY) -> GenreModel:
    """Standardise, then fit softmax regression; returns the model with its standardisation folded in."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = (features - mean) / scale
    onehot = np.eye(len(STYLES))[labels]
    theta = np.zeros(x.shape[1] * len(STYLES) + len(STYLES))
    result = optimize.minimize(_loss_and_gradient, theta, args=(x, onehot, penalty), jac=True, method="L-BFGS-B",
                               options={"maxiter": 2000})
    weights = result.x[: x.shape[1] * len(STYLES)].reshape(x.shape[1], len(STYLES))
    return GenreModel(MODEL_NAME, STYLES, mean, scale, weights, result.x[x.shape[1] * len(STYLES) :])


def confusion(model: GenreModel, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(true, predicted) counts."""
    predicted = model.probabilities(features).argmax(axis=1)
    matrix = np.zeros((len(STYLES), len(STYLES)), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def format_confusion(matrix: np.ndarray) -> str:
    width = max(len(s) for s in STYLES)
    short = [s[:8] for s in STYLES]
    lines = [" " * (width + 2) + " ".join(f"{s:>8}" for s in short) + "   (rows: true, columns: predicted)"]
    for style, row in zip(STYLES, matrix, strict=True):
        lines.append(f"{style:>{width}}  " + " ".join(f"{count:>8d}" for count in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    train_x, train_y = dataset(TRAIN_SEEDS, args.workers)
    held_x, held_y = dataset(VALIDATION_SEEDS, args.workers)
    print(f"rendered and analysed {len(train_x)} training and {len(held_x)} held-out clips "
          f"in {time.perf_counter() - started:.0f} s")
    model = fit(train_x, train_y)
    train_accuracy = np.trace(confusion(model, train_x, train_y)) / len(train_y)
    matrix = confusion(model, held_x, held_y)
    print(f"training accuracy: {train_accuracy:.3f}")
    print(f"held-out accuracy: {np.trace(matrix) / len(held_y):.3f} ({np.trace(matrix)}/{len(held_y)})")
    print(format_confusion(matrix))
    model.save(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes) in {time.perf_counter() - started:.0f} s total")


if __name__ == "__main__":
    main()

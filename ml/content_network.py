"""The content network: a small multilayer perceptron from a track's content vector to its ALS factors.

Why a network and not only the ridge map (``ml.content.ContentMap``): what listeners hear as alike is not a
linear function of the analysis. A taste for "bright" music means a bright *rock* track and a bright
*ambient* one, whose spectra differ far more than the two brightnesses do; to place them, the map must
combine what a track is (its style, from timbre and rhythm) with where it sits inside that style, and a
linear map cannot multiply one feature by another. Following van den Oord, Dieleman and Schrauwen
(NeurIPS 2013), the network is trained with each ALS run on the played tracks, from their content vectors
to their (fixed) ALS item factors, with a squared error.

Shape: standardised content vector → ``rec_content_layers`` hidden ReLU layers of ``rec_content_hidden``
units → the factors, added to a fixed linear path: the ridge map (``ml.content.ContentMap``,
``rec_content_regularization``) fitted in closed form on the same tracks. The output layer starts at
zero, so epoch 0 *is* the ridge map and the hidden layers learn only its residual; early stopping may
keep 0 epochs, and then the network is exactly as good as the linear map. Why: with the first version
(the linear path learnt by the network too, from zero) early stopping halted it before it had even
matched the ridge map on the validation catalogue (bench/README.md, Cold start). Training: AdamW
(``rec_content_learning_rate``, decoupled weight decay ``rec_content_weight_decay`` on the hidden and
output weights, not the biases), minibatches of ``rec_content_batch``; the epoch count is chosen by early
stopping on a seeded ``rec_content_validation_share`` of the played tracks (``rec_content_patience``
epochs without a better held-out error, at most ``rec_content_max_epochs``), then the network (and its
ridge path) is fitted again on every played track for that many epochs. Seeded by ``rec_seed`` (initial
weights and batch order, inside a forked torch RNG so the caller's is untouched) with
``rec_content_threads`` torch threads set for the fit and restored after it: the same data and settings
give the same weights.

Measured (bench/README.md, Cold start, 108 played tracks): on one-style and on cross-genre tastes the
network is level with the ridge map (early stopping kept 4–6 epochs); the hidden layers are there for
catalogues where interactions between features generalise, which that small simulation did not show.

Serving never needs torch: the weights leave training as plain numpy arrays, stored in the model artefact
(``ml.collaborative.Model.to_bytes``), and :meth:`ContentNetwork.predict` is numpy. torch is imported
inside :meth:`ContentNetwork.fit` only, so Serve replicas and ``RecShard`` actors, which load artefacts,
never import it (``tests/test_rec_content_network.py`` checks that in a fresh process).

Plain numpy (and torch while fitting): no Ray, no web.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.content import ContentMap, feature_scale
from verseflow.settings import Settings

if TYPE_CHECKING:
    import torch

#: the artefact's array names start with this (``ml.collaborative.Model.to_bytes``)
PREFIX = "content_net_"


@dataclass
class ContentNetwork:
    """The trained network as numpy arrays: standardisation, layers (the last is the output), linear path."""

    mean: np.ndarray                            # (features,)
    scale: np.ndarray                           # (features,)
    layers: list[tuple[np.ndarray, np.ndarray]]  # (inputs, outputs) weights and (outputs,) biases, in order
    skip: np.ndarray                            # (features, factors): the linear (ridge) path
    epochs: int                                 # epochs of the final fit (chosen on held-out tracks)

    def predict(self, content: np.ndarray) -> np.ndarray:
        """Item factors for each row of ``content`` (or one vector), in numpy."""
        rows = (np.atleast_2d(np.asarray(content, dtype=np.float32)) - self.mean) / self.scale
        hidden = rows
        for weights, bias in self.layers[:-1]:
            hidden = np.maximum(hidden @ weights + bias, 0.0)
        weights, bias = self.layers[-1]
        return (hidden @ weights + bias + rows @ self.skip).astype(np.float32)

    @property
    def dimensions(self) -> int:
        return len(self.mean)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays stored in the model artefact, under ``PREFIX``."""
        arrays = {f"{PREFIX}mean": self.mean, f"{PREFIX}scale": self.scale, f"{PREFIX}skip": self.skip,
                  f"{PREFIX}epochs": np.int64(self.epochs)}
        for i, (weights, bias) in enumerate(self.layers):
            arrays[f"{PREFIX}w{i}"] = weights
            arrays[f"{PREFIX}b{i}"] = bias
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> ContentNetwork | None:
        """The network stored in an artefact's arrays; None when it holds none."""
        if f"{PREFIX}w0" not in arrays:
            return None
        layers = []
        while f"{PREFIX}w{len(layers)}" in arrays:
            i = len(layers)
            layers.append((np.asarray(arrays[f"{PREFIX}w{i}"]), np.asarray(arrays[f"{PREFIX}b{i}"])))
        return cls(np.asarray(arrays[f"{PREFIX}mean"]), np.asarray(arrays[f"{PREFIX}scale"]), layers,
                   np.asarray(arrays[f"{PREFIX}skip"]), int(arrays[f"{PREFIX}epochs"]))

    @classmethod
    def fit(cls, content: np.ndarray, factors: np.ndarray, settings: Settings) -> ContentNetwork:
        """Train on (content vector, item factors) pairs of played tracks; see the module docstring."""
        content = np.asarray(content, dtype=np.float64)
        mean = content.mean(axis=0)
        scale = feature_scale(content)
        inputs = ((content - mean) / scale).astype(np.float32)
        targets = np.asarray(factors, dtype=np.float32)
        # Factors are trained on a unit scale whatever ALS's regularisation made them; undone at export.
        target_scale = float(np.sqrt(np.mean(np.square(targets)))) or 1.0
        targets = targets / target_scale
        order = np.random.default_rng(settings.rec_seed).permutation(len(inputs))
        held = min(len(inputs) - 1, max(1, round(len(inputs) * settings.rec_content_validation_share)))
        with _torch_session(settings) as torch:
            epochs = settings.rec_content_max_epochs
            if held > 0:
                _, epochs = _train(torch, inputs[order[held:]], targets[order[held:]], settings, epochs,
                                   (inputs[order[:held]], targets[order[:held]]))
            net, _ = _train(torch, inputs, targets, settings, epochs, None)
            layers, skip = _exported(net, target_scale)
        return cls(mean.astype(np.float32), scale.astype(np.float32), layers, skip, epochs)


@contextmanager
def _torch_session(settings: Settings) -> Iterator[Any]:
    """torch, imported here only, with its thread count and RNG set for one fit and restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.rec_content_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            yield torch
    finally:
        torch.set_num_threads(threads)


def _linear_path(inputs: np.ndarray, targets: np.ndarray, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """The ridge map's weights (``ml.content.ContentMap``, ``rec_content_regularization``) on ``inputs`` as
    given: (features, factors) weights and (factors,) bias, its own standardisation folded in."""
    ridge = ContentMap.fit(inputs, targets, settings.rec_content_regularization)
    weights = ridge.weights[:-1] / ridge.scale[:, None]
    return weights.astype(np.float32), (ridge.weights[-1] - (ridge.mean / ridge.scale) @ ridge.weights[:-1]
                                        ).astype(np.float32)


def _network(torch: Any, inputs: np.ndarray, targets: np.ndarray, settings: Settings) -> torch.nn.Module:
    nn = torch.nn
    features, factors = inputs.shape[1], targets.shape[1]
    linear_weights, linear_bias = _linear_path(inputs, targets, settings)

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [features] + [settings.rec_content_hidden] * settings.rec_content_layers
            blocks: list[nn.Module] = []
            for width_in, width_out in zip(widths, widths[1:], strict=False):
                blocks += [nn.Linear(width_in, width_out), nn.ReLU()]
            self.hidden = nn.Sequential(*blocks)
            self.output = nn.Linear(widths[-1], factors)
            nn.init.zeros_(self.output.weight)   # epoch 0 is the ridge map exactly: the layers learn its residual
            nn.init.zeros_(self.output.bias)
            self.skip = nn.Linear(features, factors)
            with torch.no_grad():
                self.skip.weight.copy_(torch.from_numpy(linear_weights.T.copy()))
                self.skip.bias.copy_(torch.from_numpy(linear_bias))
            self.skip.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(self.hidden(x)) + self.skip(x)

    return Network()


def _train(torch: Any, inputs: np.ndarray, targets: np.ndarray, settings: Settings, epochs: int,
           validation: tuple[np.ndarray, np.ndarray] | None) -> tuple[torch.nn.Module, int]:
    """A network fitted for at most ``epochs``; with ``validation``, stopped early, and the best epoch."""
    torch.manual_seed(settings.rec_seed)
    net = _network(torch, inputs, targets, settings)
    trained = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    decayed = [p for name, p in trained if name.endswith("weight")]
    plain = [p for name, p in trained if not name.endswith("weight")]
    optimiser = torch.optim.AdamW([{"params": decayed, "weight_decay": settings.rec_content_weight_decay},
                                   {"params": plain, "weight_decay": 0.0}], lr=settings.rec_content_learning_rate)
    batches = torch.Generator().manual_seed(settings.rec_seed)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    best_error, best_epoch = math.inf, epochs
    for epoch in range(0 if validation else 1, epochs + 1):
        if epoch:
            net.train()
            for batch in torch.randperm(len(x), generator=batches).split(settings.rec_content_batch):
                optimiser.zero_grad()
                torch.nn.functional.mse_loss(net(x[batch]), y[batch]).backward()
                optimiser.step()
        if validation is None:
            continue
        with torch.no_grad():
            net.eval()
            error = float(torch.nn.functional.mse_loss(net(torch.from_numpy(validation[0])),
                                                       torch.from_numpy(validation[1])))
        if error < best_error:
            best_error, best_epoch = error, epoch
        elif epoch - best_epoch >= settings.rec_content_patience:
            break
    return net, best_epoch


def _exported(net: torch.nn.Module, target_scale: float) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The fitted weights as (inputs, outputs) numpy arrays, the output scaled back to the factors' size."""
    linear = [m for m in net.hidden if hasattr(m, "weight")] + [net.output]
    layers = []
    for i, module in enumerate(linear):
        factor = target_scale if i == len(linear) - 1 else 1.0
        layers.append(((module.weight.detach().numpy().T * factor).astype(np.float32),
                       (module.bias.detach().numpy() * factor).astype(np.float32)))
    weights, bias = layers[-1]
    layers[-1] = (weights, (bias + net.skip.bias.detach().numpy() * target_scale).astype(np.float32))
    skip = (net.skip.weight.detach().numpy().T * target_scale).astype(np.float32)
    return layers, skip

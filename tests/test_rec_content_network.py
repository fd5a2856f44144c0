"""The content network (``ml/content_network.py``): trained with torch, deterministic for a seed, better than
the linear map where what listeners hear is not linear in the features, placing tracks nobody played by
their rendered and analysed audio, and served from numpy arrays without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import collaborative, content, sound_catalogue
from ml.content_network import ContentNetwork
from verseflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _interactions(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets with what a linear map cannot express: a product and an absolute value."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 8)).astype(np.float32)
    targets = np.stack([features[:, 0] * features[:, 1], np.abs(features[:, 2]), features[:, 3]], axis=1)
    return features * 2.0 + 1.0, targets.astype(np.float32)


def _settings(**changes) -> Settings:
    return Settings(**{"rec_content_max_epochs": 200, "rec_content_threads": 1, **changes})


def test_network_training_is_deterministic_for_a_seed_and_leaves_torch_as_it_was():
    import torch

    features, targets = _interactions()
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    first = ContentNetwork.fit(features, targets, _settings())
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)
    again = ContentNetwork.fit(features, targets, _settings())
    other = ContentNetwork.fit(features, targets, _settings(rec_seed=7))
    assert first.epochs == again.epochs
    assert all(np.array_equal(a, b) for a, b in zip(first.to_arrays().values(), again.to_arrays().values(),
                                                     strict=True))
    assert not np.array_equal(first.predict(features), other.predict(features))


def test_a_feature_constant_in_training_has_no_say_later():
    """The timbre block is all zeros while no trained track has timbre; the first tracks analysed with it
    (before the next training) must be placed as if it were absent, not thrown far off."""
    features, targets = _interactions()
    features[:, 5] = 0.0   # constant over every trained track
    later = features[:10].copy()
    later[:, 5] = np.random.default_rng(3).normal(scale=50.0, size=10)
    network = ContentNetwork.fit(features, targets, _settings())
    ridge = content.ContentMap.fit(features, targets, regularization=1.0)
    for model in (network, ridge):
        assert np.allclose(model.predict(later), model.predict(features[:10]), atol=1e-5)


def test_network_learns_what_the_linear_map_cannot():
    features, targets = _interactions(400)
    train, test = slice(0, 320), slice(320, 400)
    network = ContentNetwork.fit(features[train], targets[train], _settings())
    ridge = content.ContentMap.fit(features[train], targets[train], regularization=1.0)
    network_error = float(np.mean((network.predict(features[test]) - targets[test]) ** 2))
    ridge_error = float(np.mean((ridge.predict(features[test]) - targets[test]) ** 2))
    assert network_error < 0.5 * ridge_error
    assert 1 <= network.epochs <= 200


@pytest.fixture(scope="module")
def rendered():
    """Eight rendered, analysed clips of each of three styles, and listeners who each favour one style."""
    catalogue = sound_catalogue.catalogue(8, ("rock", "ambient", "drum and bass"), seed=3, seconds=6.0)
    plays = sound_catalogue.listeners(catalogue.style_of, users=60, per_user=6, loyalty=0.95, seed=1)
    return catalogue, plays


def test_a_cold_track_gets_similar_tracks_from_its_audio_through_the_network(rendered):
    catalogue, plays = rendered
    settings = Settings(rec_factors=8, rec_regularization=1.0, rec_train_threads=1, rec_ease_rank=16)
    cold = {int(i) for i in np.flatnonzero(np.arange(len(catalogue.style_of)) % 8 >= 6)}   # two per style
    coo = plays.tocoo()
    entries = [(str(u), str(i), settings.rec_alpha) for u, i in zip(coo.row, coo.col, strict=True) if i not in cold]
    sounds = {str(i): content.content_vector(a) for i, a in enumerate(catalogue.analyses)}
    model = collaborative.train(entries, settings, version=1, content=sounds)
    assert isinstance(model.content_map, ContentNetwork)
    for track in cold:
        item = model.track_index[str(track)]
        assert model.is_cold(item)
        neighbours = [int(model.track_ids[i]) for i, _ in model.similar(item, 5)]
        same = sum(catalogue.style_of[n] == catalogue.style_of[track] for n in neighbours)
        assert same >= 4, (catalogue.styles[catalogue.style_of[track]], neighbours)
    loaded = collaborative.Model.from_bytes(model.to_bytes())
    assert isinstance(loaded.content_map, ContentNetwork)
    some = np.stack([sounds[str(t)] for t in sorted(cold)])
    assert np.array_equal(loaded.content_map.predict(some), model.content_map.predict(some))


_SERVING = """
import json, sys
import numpy as np
from actors import rec_shard                              # a RecShard actor's module
from ml import collaborative, recommend                   # what the API's replicas serve with
from serve_deployments.routes import recommendations      # the API's recommendation routes
model = collaborative.Model.from_bytes(open(sys.argv[1], "rb").read())
predicted = np.stack([model.sound_vector(row) for row in np.load(sys.argv[2])])
np.save(sys.argv[3], predicted)
print(json.dumps({"content_model": type(model.content_map).__name__,
                  "torch": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio"))}))
"""


def test_serving_a_model_with_the_network_never_imports_torch(tmp_path):
    settings = Settings(rec_factors=4, rec_regularization=1.0, rec_train_threads=1, rec_ease_rank=8,
                        rec_content_max_epochs=50)
    rng = np.random.default_rng(0)
    sounds = {f"t{i}": rng.normal(size=6).astype(np.float32) + (i % 3) for i in range(40)}
    entries = [(f"u{u}", f"t{i}", settings.rec_alpha) for u in range(30) for i in range(40)
               if i % 3 == u % 3 and i < 36]
    model = collaborative.train(entries, settings, version=1, content=sounds)
    assert isinstance(model.content_map, ContentNetwork)
    (tmp_path / "model.npz").write_bytes(model.to_bytes())
    features = np.stack([sounds[f"t{i}"] for i in range(36, 40)])
    np.save(tmp_path / "features.npy", features)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", _SERVING, str(tmp_path / "model.npz"),
                          str(tmp_path / "features.npy"), str(tmp_path / "predicted.npy")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"content_model": "ContentNetwork", "torch": []}
    expected = np.stack([model.sound_vector(row) for row in features])
    assert np.allclose(np.load(tmp_path / "predicted.npy"), expected, atol=1e-6)

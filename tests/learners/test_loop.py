"""The training loop: several meta-steps per compiled call, and a resumed run that sees
exactly the episodes of an uninterrupted one."""

import keras
import numpy as np
import pytest

from tfmetarec.learners import MAML, MetaTrainer
from tfmetarec.tasks.samplers import EpisodeSampler


@pytest.fixture(scope="module")
def sampler(small_synthetic):
    _, split, encoded = small_synthetic
    return EpisodeSampler(encoded, split.meta_train, batch_size=4, query_size=5, max_support=32, seed=3), encoded


def _trainer(encoded, k=1, jit=False):
    from tfmetarec.models import MeLU

    model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=4, hidden_units=(8,), seed=0)
    return MetaTrainer(MAML(model, inner_steps=2, inner_lr=0.1), keras.optimizers.Adam(1e-2), jit_compile=jit,
                       steps_per_execution=k)


def _weights(trainer):
    return [v.numpy() for v in trainer.learner.weights]


def test_episodes_are_a_pure_function_of_seed_and_position(sampler):
    source, _ = sampler
    a, b = source.sample(7), source.sample(7)
    for part in ("support", "query"):
        for key in a[part]:
            np.testing.assert_array_equal(a[part][key], b[part][key])
    group = source.sample_group(2, 3)
    assert group["task_mask"].shape == (3, 4)
    assert len({group["support"]["mask"].shape[-1]}) == 1  # one bucket per group
    streamed = next(iter(source.dataset(start=7)))
    np.testing.assert_array_equal(streamed["query"]["item_id"].numpy(), a["query"]["item_id"])


@pytest.mark.parametrize("jit", [False, True])
def test_a_group_of_steps_in_one_call_equals_the_same_steps_one_by_one(sampler, jit):
    source, encoded = sampler
    group = source.sample_group(0, 3)
    one_call = _trainer(encoded, k=3, jit=jit)
    logs = one_call.train_steps(group)
    one_by_one = _trainer(encoded, jit=jit)
    losses = [one_by_one.train_step({p: ({k: v[i] for k, v in group[p].items()} if isinstance(group[p], dict)
                                         else group[p][i]) for p in group})["loss"] for i in range(3)]
    assert int(one_call.step.numpy()) == int(one_by_one.step.numpy()) == 3
    np.testing.assert_allclose(logs["loss"], np.mean(losses), rtol=1e-5)
    for a, b in zip(_weights(one_call), _weights(one_by_one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 4])
def test_a_resumed_run_reaches_the_uninterrupted_weights(sampler, tmp_path, k):
    source, encoded = sampler
    straight = _trainer(encoded, k)
    straight.fit(source, 10, verbose=0)
    first = _trainer(encoded, k)
    first.fit(source, 8, verbose=0, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=4)
    resumed = _trainer(encoded, k)  # a fresh process would build the same, then restore
    resumed.fit(source, 10, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    assert int(resumed.step.numpy()) == 10
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_training_in_chunks_on_a_samplers_dataset_continues_the_stream(sampler):
    """fit(sampler.dataset(), n) twice does not start again at episode 0: it trains on exactly
    the episodes one fit over the whole budget does (a dataset made to start elsewhere is refused)."""
    source, encoded = sampler
    straight = _trainer(encoded)
    straight.fit(source, 6, verbose=0)
    chunked = _trainer(encoded)
    chunked.fit(source.dataset(), 3, verbose=0)
    chunked.fit(source.dataset(), 6, verbose=0)
    assert int(chunked.step.numpy()) == 6
    for a, b in zip(_weights(straight), _weights(chunked)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="starts at episode 2, but training stands at step 6"):
        chunked.fit(source.dataset(start=2), 8, verbose=0)


def test_plain_iterables_still_train_one_step_per_episode(sampler):
    source, encoded = sampler
    trainer = _trainer(encoded, k=4)
    history = trainer.fit([source.sample(i) for i in range(3)], 3, verbose=0)
    assert int(trainer.step.numpy()) == 3 and len(history["loss"]) == 3
    with pytest.raises(ValueError, match="steps_per_execution must be"):
        _trainer(encoded, k=0)


def test_checkpoints_hold_the_stream_state_and_refuse_another_stream(sampler, small_synthetic, tmp_path):
    from tfmetarec.learners.trainer import CheckpointError

    source, encoded = sampler
    trainer = _trainer(encoded)
    trainer.fit(source, 4, verbose=0, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2)
    assert int(trainer.stream_seed.numpy()) == 3 and int(trainer.stream_position.numpy()) == 4
    assert trainer.stream_fingerprint.numpy().decode() == source.state()["fingerprint"]
    _, split, _ = small_synthetic
    other_seed = EpisodeSampler(encoded, split.meta_train, batch_size=4, query_size=5, max_support=32, seed=4)
    other = r"ckpt-4 was written for another run: episode seed 3 in the checkpoint, 4 now"
    with pytest.raises(CheckpointError, match=other):
        _trainer(encoded).fit(other_seed, 6, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    fewer_tasks = EpisodeSampler(encoded, split.meta_train.iloc[: len(split.meta_train) // 2], batch_size=4,
                                 query_size=5, max_support=32, seed=3)
    with pytest.raises(CheckpointError, match="fingerprint"):
        _trainer(encoded).fit(fewer_tasks, 6, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    data_file = next((tmp_path / "ckpt").glob("ckpt-4.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"ckpt-4 cannot be restored.*corrupt"):
        _trainer(encoded).fit(source, 6, verbose=0, checkpoint_dir=tmp_path / "ckpt")

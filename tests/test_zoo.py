"""The zoo benchmark harness on a tiny budget: every pair runs or says why not."""

from tfmetarec.config import TrainConfig
from tfmetarec.workflows.zoo import ZooSettings, run_zoo


def test_tiny_zoo_writes_tables_with_seed_spread(tmp_path):
    settings = ZooSettings(
        datasets=("synthetic",),
        seeds=(0, 1),
        models=("melu", "two_tower"),
        learners=("maml", "pretrain", "item_mean"),
        cross_model_learners=("maml",),
        model_options=(("embedding_dim", 8), ("hidden_units", (16,))),
        train=TrainConfig(meta_steps=10, pretrain_steps=10, batch_size=16, jit_compile=False),
        inner_steps=1,
    )
    results = run_zoo(settings, tmp_path, verbose=False)
    done = results[results["skipped"].isna()] if "skipped" in results else results
    assert set(done.method) == {"maml", "no-adaptation", "fine-tune", "item_mean"}
    assert set(done[done.model == "two_tower"].method) == {"maml"}
    assert set(done.seed) == {0, 1}
    table = (tmp_path / "zoo_table.md").read_text()
    assert "### synthetic: MAE (mean ± 95 % CI over 2 seeds)" in table
    assert "| melu | maml |" in table and " ± " in table
    assert "### synthetic: ranking the whole catalogue, user_cold" in table
    assert "| two_tower | maml |" in table
    cold = done[done.scenario == "user_cold"]
    assert cold["Recall@20"].between(0, 1).all() and cold["Recall@20"].notna().all()
    assert done[done.scenario == "warm"]["Recall@20"].isna().all()
    summary = (tmp_path / "zoo_table.csv").read_text()
    assert "MAE_std" in summary and "AUC" in summary

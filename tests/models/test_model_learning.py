"""Short synthetic meta-training: MAML on each newer model beats the same model without
adaptation on user-cold MAE (the CF and two-tower files hold their own)."""

import pytest


@pytest.mark.parametrize("model", ["content", "hybrid", "metaemb"])
def test_maml_beats_no_adaptation_on_user_cold(learning_harness, model):
    maml, baseline = learning_harness(model, "maml"), learning_harness(model, "pretrain")
    assert maml < baseline - 0.02, (model, maml, baseline)

"""dojo.viz.preference: the objective table notebook 07 shows, and the log-probs it reads."""

import math

import pytest
import torch

from dojo import paths
from dojo.viz.preference import objective_table, pair_logps


def logps(chosen, rejected, lengths=(4.0, 4.0)):
    chosen, rejected = torch.tensor(chosen), torch.tensor(rejected)
    n = len(chosen)
    return {
        "chosen": chosen,
        "rejected": rejected,
        "chosen_len": torch.full((n,), lengths[0]),
        "rejected_len": torch.full((n,), lengths[1]),
    }


def test_objective_table_at_the_reference_is_log2_and_pushes_every_pair():
    same = logps([-5.0, -9.0], [-6.0, -7.0])
    table = objective_table(same, same, beta=0.1)
    assert table.loc["DPO (sigmoid)", "loss"] == pytest.approx(math.log(2))
    assert table.loc["hinge (SLiC)", "loss"] == pytest.approx(1.0)
    assert table.loc["IPO", "loss"] == pytest.approx((1 / (2 * 0.1)) ** 2)
    # d/d margin of -log sigmoid(beta * margin) at 0 is -beta / 2: push beta/2 on each reply.
    assert table.loc["DPO (sigmoid)", "push up chosen"] == pytest.approx(0.05)
    assert table.loc["DPO (sigmoid)", "push down rejected"] == pytest.approx(0.05)
    assert (table["pairs still pushed"] == 1.0).all()
    assert set(table["reference model"]) == {"yes", "no"}


def test_hinge_stops_and_ipo_pulls_back_once_the_margin_is_large():
    ref = logps([-10.0], [-10.0])
    far = logps([-2.0], [-40.0])  # margin 46 nats: beyond the hinge's 1/beta and IPO's target
    table = objective_table(far, ref, beta=0.1)
    assert table.loc["hinge (SLiC)", "pairs still pushed"] == 0.0
    assert table.loc["hinge (SLiC)", "loss"] == 0.0
    assert table.loc["IPO", "push up chosen"] < 0  # overshoot: IPO lowers the chosen reply again
    assert 0 < table.loc["DPO (sigmoid)", "push up chosen"] < 0.01  # settled, but never zero


@pytest.mark.skipif(not paths.TINY_CHAT_MODEL.exists(), reason="dojo-tiny-chat not built")
def test_pair_logps_sums_match_the_means_times_the_reply_length():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(paths.TINY_CHAT_MODEL)
    model = AutoModelForCausalLM.from_pretrained(paths.TINY_CHAT_MODEL)
    records = [
        {
            "prompt": [{"role": "user", "content": f"{a} + {b} = ?"}],
            "chosen": [{"role": "assistant", "content": f"{a} + {b} = {a + b}"}],
            "rejected": [{"role": "assistant", "content": f"{a} + {b} = {a + b + 10}"}],
        }
        for a, b in ((12, 30), (7, 5), (48, 27))
    ]
    out = pair_logps(model, tokenizer, records)
    for side in ("chosen", "rejected"):
        assert out[side].shape == (3,)
        assert (out[side] < 0).all()
        torch.testing.assert_close(out[side], out[f"{side}_avg"] * out[f"{side}_len"])
    mismatched = pair_logps(model, tokenizer, records, completions="mismatched")
    # prompt 0 with reply 1: an answer to another question is far less likely
    assert mismatched["chosen"][0] < out["chosen"][0]

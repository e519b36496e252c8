"""dojo.losses equals TRL 1.16 on the same batch and logits.

Where TRL exposes the objective as a method (ORPO's `odds_ratio_loss`, CPO/SimPO's `cpo_loss`,
ORPO's `get_batch_logps`) we call it on a bare instance; where the maths sits inline in a trainer's
`_compute_loss` (DPO, KTO, GRPO) we run that method on a tiny random Llama and compare.
"""

import string
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from dojo import losses

WORDS = list(string.ascii_lowercase)


@pytest.fixture(scope="module")
def tokenizer():
    """A whitespace word-level tokenizer over a-z: enough for TRL's trainers to tokenize text."""
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_llama(seed: int, vocab_size: int = 29) -> LlamaForCausalLM:
    """A random two-layer Llama small enough to run a trainer step in milliseconds."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    # Random init is near-uniform; a larger lm_head spreads log-probs so the losses differ per pair.
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


def random_text(rng: torch.Generator, low: int, high: int) -> str:
    n = int(torch.randint(low, high, (1,), generator=rng))
    return " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=rng))


def preference_dataset(n: int = 4) -> Dataset:
    rng = torch.Generator().manual_seed(0)
    rows = [
        {
            "prompt": random_text(rng, 2, 6),
            "chosen": random_text(rng, 1, 6),
            "rejected": random_text(rng, 1, 6),
        }
        for _ in range(n)
    ]
    return Dataset.from_list(rows)


def completion_logps(model, input_ids, attention_mask, completion_mask, average=False):
    """Our own log-probs of the completion tokens, from the plain forward's logits."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    return losses.sequence_logps(logits, labels, average=average)


# --------------------------------------------------------------------------------------------
# log-probs
# --------------------------------------------------------------------------------------------


def test_sequence_logps_matches_trl_get_batch_logps():
    from trl.experimental.orpo import ORPOTrainer

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :3] = -100
    labels[2, 5:] = -100
    for average in (False, True):
        ours = losses.sequence_logps(logits, labels, average=average)
        theirs = ORPOTrainer.get_batch_logps(logits, labels, average_log_prob=average)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_per_token_logps_ignores_masked_positions():
    logits = torch.randn(1, 4, 5)
    labels = torch.tensor([[-100, -100, 2, 3]])
    logps = losses.per_token_logps(logits, labels)
    assert logps.shape == (1, 3)
    assert logps[0, 0] == 0 and logps[0, 1] < 0 and logps[0, 2] < 0


# --------------------------------------------------------------------------------------------
# DPO: TRL's DPOTrainer._compute_loss on a tiny model
# --------------------------------------------------------------------------------------------


def dpo_trainer(tokenizer, tmp_path, loss_type, beta=0.1, label_smoothing=0.0):
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        loss_type=loss_type,
        beta=beta,
        label_smoothing=label_smoothing,
        report_to=[],
        use_cpu=True,
    )
    return DPOTrainer(
        model=tiny_llama(0),
        ref_model=tiny_llama(1),
        args=args,
        train_dataset=preference_dataset(),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize(
    "loss_type,label_smoothing",
    [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.1)],
)
def test_dpo_loss_equals_trl(tokenizer, tmp_path, loss_type, label_smoothing):
    beta = 0.5
    trainer = dpo_trainer(tokenizer, tmp_path, loss_type, beta, label_smoothing)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch)

    ids, attn, cmask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    policy = completion_logps(trainer.model, ids, attn, cmask)
    ref = completion_logps(trainer.ref_model, ids, attn, cmask)
    pc, pr = policy.chunk(2)  # TRL stacks [chosen; rejected]
    rc, rr = ref.chunk(2)
    lengths_c, lengths_r = cmask.sum(-1).chunk(2)
    ours = losses.dpo_loss(
        pc,
        pr,
        rc,
        rr,
        beta,
        loss_type,
        label_smoothing,
        chosen_lengths=lengths_c,
        rejected_lengths=lengths_r,
    )
    assert ours.shape == (4,)
    torch.testing.assert_close(ours.mean(), trl_loss, rtol=0, atol=1e-6)

    rewards = losses.dpo_rewards(pc, pr, rc, rr, beta)
    metrics = trainer._metrics["train"]
    assert rewards.chosen.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], abs=1e-6)
    assert rewards.rejected.mean().item() == pytest.approx(
        metrics["rewards/rejected"][-1], abs=1e-6
    )
    assert rewards.margins.mean().item() == pytest.approx(metrics["rewards/margins"][-1], abs=1e-6)
    assert rewards.accuracies.mean().item() == pytest.approx(metrics["rewards/accuracies"][-1])


def test_dpo_loss_is_log2_when_policy_equals_reference():
    logps = torch.tensor([-3.0, -7.0])
    loss = losses.dpo_loss(logps, logps - 1, logps, logps - 1)
    torch.testing.assert_close(loss, torch.full((2,), 0.6931471805599453))


def test_dpo_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = (
        torch.tensor([-1.0]),
        torch.tensor([-4.0]),
        torch.tensor([-2.0]),
        torch.tensor([-2.0]),
    )
    eps, beta = 0.2, 0.5
    margin = beta * ((pc - rc) - (pr - rr))
    expected = -(1 - eps) * torch.nn.functional.logsigmoid(
        margin
    ) - eps * torch.nn.functional.logsigmoid(-margin)
    torch.testing.assert_close(losses.dpo_loss(pc, pr, rc, rr, beta, "sigmoid", eps), expected)


def test_dpo_rejects_unknown_loss_type_and_bad_robust_smoothing():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="loss_type='sigmod'.*sigmoid, ipo, hinge, robust"):
        losses.dpo_loss(x, x, x, x, loss_type="sigmod")
    with pytest.raises(ValueError, match="label_smoothing=0.5"):
        losses.dpo_loss(x, x, x, x, loss_type="robust", label_smoothing=0.5)


# --------------------------------------------------------------------------------------------
# SimPO (CPO with loss_type="simpo") and ORPO: TRL's loss methods on a bare instance
# --------------------------------------------------------------------------------------------


def bare(cls, **attrs):
    """An instance of a TRL trainer without running __init__: only the attributes its loss reads."""
    obj = object.__new__(cls)
    obj.accelerator = SimpleNamespace(device=torch.device("cpu"))
    for name, value in attrs.items():
        setattr(obj, name, value)
    return obj


def average_logps_pair(seed=0, n=6):
    torch.manual_seed(seed)
    # Length-averaged log-probs lie in (-inf, 0); include values near 0 where log(1-p) is delicate.
    chosen = -torch.rand(n) * 3
    rejected = -torch.rand(n) * 3
    chosen[0] = -1e-4
    return chosen, rejected


@pytest.mark.parametrize(
    "beta,gamma,smoothing", [(0.1, 0.5, 0.0), (2.0, 1.0, 0.0), (2.0, 0.5, 0.1)]
)
def test_simpo_loss_equals_trl_cpo_simpo(beta, gamma, smoothing):
    from trl.experimental.cpo import CPOTrainer

    chosen, rejected = average_logps_pair()
    trainer = bare(
        CPOTrainer,
        alpha=0.0,
        loss_type="simpo",
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=smoothing,
    )
    theirs, _, _ = trainer.cpo_loss(chosen, rejected)
    ours = losses.simpo_loss(
        chosen, rejected, beta=beta, simpo_gamma=gamma, label_smoothing=smoothing
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_loss_equals_trl(beta):
    from trl.experimental.orpo import ORPOTrainer

    chosen, rejected = average_logps_pair(seed=1)
    trainer = bare(ORPOTrainer, beta=beta)
    ratio_losses, _, _, _, log_odds = trainer.odds_ratio_loss(chosen, rejected)
    nll = torch.tensor(2.5)
    # TRL's total: loss = nll - losses.mean(), where its `losses` is beta * log sigmoid(log odds).
    trl_total = nll - ratio_losses.mean()
    ours = losses.orpo_loss(chosen, rejected, beta=beta, chosen_nll_loss=nll)
    torch.testing.assert_close(ours.mean(), trl_total, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        losses.orpo_log_odds_ratio(chosen, rejected).mean(), log_odds, rtol=0, atol=1e-6
    )


# --------------------------------------------------------------------------------------------
# KTO: TRL's KTOTrainer._compute_loss on a tiny model
# --------------------------------------------------------------------------------------------


def test_kto_loss_equals_trl(tokenizer, tmp_path):
    from trl import KTOConfig, KTOTrainer

    rng = torch.Generator().manual_seed(3)
    rows = [
        {
            "prompt": random_text(rng, 2, 6),
            "completion": random_text(rng, 1, 6),
            "label": bool(i % 3),
        }
        for i in range(6)
    ]
    beta, w_good, w_bad = 0.5, 1.0, 1.5
    args = KTOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=6,
        beta=beta,
        desirable_weight=w_good,
        undesirable_weight=w_bad,
        report_to=[],
        use_cpu=True,
    )
    trainer = KTOTrainer(
        model=tiny_llama(0),
        ref_model=tiny_llama(1),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch)

    def logps(model, prefix=""):
        ids, attn = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
        return completion_logps(model, ids, attn, batch[f"{prefix}completion_mask"])

    kl = losses.kto_kl(logps(trainer.model, "KL_"), logps(trainer.ref_model, "KL_"))
    assert kl.item() == pytest.approx(trainer._metrics["train"]["kl"][-1], abs=1e-6)
    ours = losses.kto_loss(
        logps(trainer.model), logps(trainer.ref_model), batch["label"], kl, beta, w_good, w_bad
    )
    assert ours.shape == (6,)
    torch.testing.assert_close(ours.mean(), trl_loss, rtol=0, atol=1e-6)


def test_kto_loss_pushes_desirable_up_and_undesirable_down():
    ref = torch.zeros(2)
    labels = torch.tensor([True, False])
    up = losses.kto_loss(torch.tensor([1.0, 1.0]), ref, labels, kl=0.0)
    down = losses.kto_loss(torch.tensor([-1.0, -1.0]), ref, labels, kl=0.0)
    assert up[0] < down[0]  # raising a desirable completion lowers its loss
    assert up[1] > down[1]  # raising an undesirable one raises it


# --------------------------------------------------------------------------------------------
# GRPO: advantages and TRL's GRPOTrainer._compute_loss with the forward replaced by fixed log-probs
# --------------------------------------------------------------------------------------------


def test_grpo_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = losses.grpo_advantages(rewards, group_size=4)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # sample std, as TRL
    torch.testing.assert_close(adv[:4], (rewards[:4] - 0.5) / (std + 1e-4))
    torch.testing.assert_close(adv[4:], torch.zeros(4))  # no signal when the whole group ties
    unscaled = losses.grpo_advantages(rewards, group_size=4, scale=False)
    torch.testing.assert_close(unscaled[:4], rewards[:4] - 0.5)
    batch = losses.grpo_advantages(rewards, group_size=4, scale="batch")
    torch.testing.assert_close(batch[:4], (rewards[:4] - 0.5) / (rewards.std() + 1e-4))


def test_grpo_advantages_errors_and_nan():
    with pytest.raises(ValueError, match="groups of 3"):
        losses.grpo_advantages(torch.zeros(4), group_size=3)
    with pytest.raises(ValueError, match="scale='global'"):
        losses.grpo_advantages(torch.zeros(4), group_size=2, scale="global")
    adv = losses.grpo_advantages(torch.tensor([1.0, float("nan"), 0.0, 0.0]), group_size=2)
    assert adv[1] == 0 and not torch.isnan(adv).any()


def bare_grpo_trainer(tmp_path, logps, **config):
    """A GRPOTrainer whose forward returns `logps`: only `_compute_loss`'s arithmetic is exercised."""
    from accelerate import Accelerator
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **config)
    trainer = object.__new__(GRPOTrainer)
    trainer.args = args
    trainer.accelerator = Accelerator(cpu=True)
    trainer.model = torch.nn.Linear(1, 1).train()
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer.loss_type = args.loss_type
    trainer.beta = args.beta
    trainer.epsilon_low = args.epsilon
    trainer.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    trainer.importance_sampling_level = "token"
    trainer.top_entropy_quantile = 1.0
    trainer.off_policy_mask_threshold = None
    trainer.use_vllm = False
    trainer.vllm_importance_sampling_correction = False
    trainer.max_completion_length = args.max_completion_length
    trainer.current_gradient_accumulation_steps = 1
    trainer._entropy_bonus_enabled = False
    trainer.aux_loss_enabled = False
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        logps,
        torch.zeros_like(logps),
        None,
    )
    return trainer


@pytest.mark.parametrize("loss_type", losses.GRPO_LOSS_TYPES)
@pytest.mark.parametrize(
    "beta,epsilon_high,delta,level",
    [(0.0, None, None, "token"), (0.04, 0.28, 1.5, "token"), (0.04, None, None, "sequence")],
)
def test_grpo_loss_equals_trl(tmp_path, loss_type, beta, epsilon_high, delta, level):
    torch.manual_seed(0)
    batch, length, max_len = 6, 5, 8
    logps = -torch.rand(batch, length) * 3
    # Old and reference log-probs differ enough that the ratio crosses both clip bounds.
    old = logps + torch.randn(batch, length) * 0.4
    ref = logps + torch.randn(batch, length) * 0.3
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 3:] = 0
    mask[4, 1:] = 0
    advantages = losses.grpo_advantages(torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0]), group_size=3)
    num_items = mask.sum() + 7  # as if the generation batch had more tokens on other micro-batches

    trainer = bare_grpo_trainer(
        tmp_path,
        logps,
        loss_type=loss_type,
        beta=beta,
        epsilon_high=epsilon_high,
        delta=delta,
        max_completion_length=max_len,
    )
    trainer.importance_sampling_level = level
    inputs = {
        "prompt_ids": torch.ones(batch, 2, dtype=torch.long),
        "prompt_mask": torch.ones(batch, 2, dtype=torch.long),
        "completion_ids": torch.ones(batch, length, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": num_items,
    }
    trl_loss = trainer.compute_loss(trainer.model, inputs)
    ours = losses.grpo_loss(
        logps,
        old,
        advantages,
        mask,
        ref_per_token_logps=ref,
        beta=beta,
        epsilon_high=epsilon_high,
        delta=delta,
        loss_type=loss_type,
        max_completion_length=max_len,
        num_items_in_batch=num_items,
        importance_sampling_level=level,
    )
    torch.testing.assert_close(ours, trl_loss, rtol=0, atol=1e-6)
    if beta and level == "token":
        # TRL logs the KL after the bias correction (times the importance ratio).
        kl = losses.k3_kl(logps, ref) * torch.exp(logps - old)
        kl = (kl * mask).sum() / mask.sum()
        assert kl.item() == pytest.approx(trainer._metrics["train"]["kl"][-1], abs=1e-6)


def test_grpo_loss_on_policy_gradient_is_advantage_weighted_logp():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0])
    loss = losses.grpo_loss(logps, None, advantages, torch.ones(2, 2), loss_type="grpo")
    loss.backward()
    # On-policy the ratio is 1, so d loss / d logp = -A / (tokens per sequence * sequences).
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.25, -0.25], [0.25, 0.25]]))


def test_grpo_loss_errors():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="max_completion_length"):
        losses.grpo_loss(x, None, torch.zeros(1), torch.ones(1, 2), loss_type="dr_grpo")
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        losses.grpo_loss(x, None, torch.zeros(1), torch.ones(1, 2), beta=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("loss_type,beta", [("dapo", 0.0), ("grpo", 0.04)])
def test_grpo_trainer_end_to_end_equals_ours(tokenizer, tmp_path, monkeypatch, loss_type, beta):
    """A real GRPOTrainer run: its advantages and loss equal ours from the rewards and the logits."""
    from trl import GRPOConfig, GRPOTrainer

    # Keep the generation batch in order so each row's reward lines up with its advantage.
    monkeypatch.setattr("trl.trainer.grpo_trainer.shuffle_sequence_dict", lambda batch: batch)
    returned_rewards, checks = [], []

    def content_reward(completion_ids, **kwargs):
        """A deterministic reward that varies within a group: the token ids' sum modulo 5."""
        scores = [float(sum(ids) % 5) for ids in completion_ids]
        returned_rewards.append(torch.tensor(scores))
        return scores

    class CheckedGRPOTrainer(GRPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            checks.append((inputs, loss.detach(), self._ours(model, inputs)))
            return loss

        def _ours(self, model, inputs):
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
            attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
            labels = ids.masked_fill(attn == 0, -100)
            labels[:, : inputs["prompt_ids"].size(1)] = -100
            n = inputs["completion_ids"].size(1)
            with torch.no_grad():
                logps = losses.per_token_logps(
                    model(input_ids=ids, attention_mask=attn).logits, labels
                )
                ref = None
                if self.beta:
                    ref_logits = self.ref_model(input_ids=ids, attention_mask=attn).logits
                    ref = losses.per_token_logps(ref_logits, labels)[:, -n:]
            return losses.grpo_loss(
                logps[:, -n:],
                None,
                losses.grpo_advantages(returned_rewards[-1], group_size=4),
                inputs["completion_mask"],
                ref_per_token_logps=ref,
                beta=self.beta,
                loss_type=loss_type,
                max_completion_length=self.max_completion_length,
                num_items_in_batch=inputs["num_items_in_batch"],
            )

    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=6,
        max_steps=2,
        learning_rate=1e-2,
        loss_type=loss_type,
        beta=beta,
        report_to=[],
        use_cpu=True,
    )
    prompts = Dataset.from_list([{"prompt": p} for p in ["a b", "c d e", "f", "g h"]])
    # Saved to disk: with beta > 0 TRL loads the reference model from the policy's path.
    tiny_llama(0).save_pretrained(tmp_path / "policy")
    trainer = CheckedGRPOTrainer(
        model=str(tmp_path / "policy"),
        reward_funcs=content_reward,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    trainer.train()

    assert len(checks) == 2
    for (inputs, trl_loss, ours), rewards in zip(checks, returned_rewards):
        expected = losses.grpo_advantages(rewards, group_size=4)
        torch.testing.assert_close(inputs["advantages"], expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours, trl_loss, rtol=0, atol=1e-6)
    assert any(r.std() > 0 for r in returned_rewards)  # the advantages were not all zero
    if beta:  # the second step's policy has moved, so the KL term was really compared
        assert max(entry.get("kl", 0.0) for entry in trainer.state.log_history) > 0

"""The planner keeps the fastest plan that fits: checkpointing inside modules, micro-batches, precision."""

import pytest
import torch

from edgetrgl.memory.planner import INEXACT_MARGIN, _builder_from_blocknet, plan_modules
from edgetrgl.memory.work import MachineSpeed, count_work
from edgetrgl.models import create_model
from edgetrgl.planning.speed import CPU, machine_speed
from edgetrgl.api import train
from tests.conftest import tiny_config

SHAPE = (32, 3, 32, 32)


def _build(batch_shape=SHAPE):
    blocknet = lambda: create_model("resnet20", in_channels=3, image_size=batch_shape[-1], width=8)  # noqa: E731
    return _builder_from_blocknet(blocknet, batch_shape, 10)


def _plan(budget=None, batch_shape=SHAPE, **options):
    options = {"num_modules": 3, "speed": lambda precision: CPU, **options}
    return plan_modules(_build(batch_shape), 9, batch_shape, 10, budget=budget, **options)


def _peaks(batch_shape=SHAPE):
    return [_plan(batch_shape=batch_shape, checkpoint_blocks=c).peak_bytes for c in (False, True)]


def test_work_counts_flops_bytes_and_ops():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    work = count_work(lambda: (a @ b).relu())
    assert work.flops == 2 * 64 * 32 * 16
    assert work.bytes_written == 2 * 64 * 16 * 4 and work.ops == 2
    speed = MachineSpeed(flops_per_s=1e9, bytes_per_s=1e9, seconds_per_op=1e-6)
    assert speed.seconds(work) == pytest.approx(work.flops / 1e9 + work.bytes_written / 1e9 + 2e-6)


def test_fake_tensors_count_the_ops_real_tensors_dispatch():
    """The time model's rates are fitted on real steps' counts and priced on fake ones: the two must
    agree (FakeTensorMode's metadata queries, ``prim.device``, are no kernels and were once counted,
    over twice the real ops, which made small micro-batches look slow)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from edgetrgl.step import local_step

    def one_step():
        torch.manual_seed(0)
        net = _build((8, 3, 16, 16))(1, None)
        stage, head = net.stages[0], net.heads[0]
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
        optimizer = torch.optim.SGD(list(stage.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9)
        step = lambda: local_step(stage, head, optimizer, x, y, (1.0, 0.5), 0.0, 4)  # noqa: E731
        step()  # momentum exists
        return count_work(step)

    real = one_step()
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = one_step()
    assert fake.flops == real.flops and fake.bytes_written == real.bytes_written
    assert abs(fake.ops - real.ops) <= 0.02 * real.ops


def test_checkpointing_is_chosen_when_only_it_fits():
    """Batch 1 cannot be micro-batched: between the two peaks only checkpointing inside modules fits."""
    plain, checkpointed = _peaks(batch_shape=(1, 3, 128, 128))
    assert checkpointed < plain
    plan = _plan(budget=(plain + checkpointed) // 2, batch_shape=(1, 3, 128, 128), checkpoint_blocks="auto")
    assert plan.checkpoint_blocks and plan.peak_bytes <= (plain + checkpointed) // 2
    assert "the only one of 2 step options that fits" in plan.notes[-1]


def test_with_room_to_spare_the_plain_step_wins():
    plain, _ = _peaks()
    plan = _plan(budget=plain, checkpoint_blocks="auto")
    assert not plan.checkpoint_blocks and plan.micro_batch == SHAPE[0]
    assert "which would only add time" in plan.notes[-1]
    weighed = _plan(budget=plain, checkpoint_blocks="auto", num_modules="auto")  # K searched: both are priced
    timed = {c["checkpoint_blocks"]: c["modelled_step_s"] for c in weighed.candidates}
    assert len(timed) == 2 and not weighed.checkpoint_blocks
    assert timed[False] < timed[True]  # recomputing the forward costs time


def test_a_tight_budget_weighs_checkpointing_against_micro_batches():
    """Between the peaks both fit: checkpointing at full batch, or micro-batches without it; the
    planner keeps the faster by the model, and prefers the exact plan unless the other is clearly faster."""
    plain, checkpointed = _peaks()
    plan = _plan(budget=(plain + checkpointed) // 2, checkpoint_blocks="auto")
    timed = {(c["checkpoint_blocks"], c["micro_batch"]): c["modelled_step_s"] for c in plan.candidates}
    assert len(timed) == 2
    ckpt = timed[(True, SHAPE[0])]
    micro = next(t for (c, m), t in timed.items() if not c)
    expect_ckpt = micro > ckpt * INEXACT_MARGIN
    assert plan.checkpoint_blocks == expect_ckpt


def test_options_not_left_to_the_planner_are_kept():
    plain, checkpointed = _peaks()
    plan = _plan(budget=(plain + checkpointed) // 2, checkpoint_blocks=False)
    assert not plan.checkpoint_blocks and plan.micro_batch < SHAPE[0] and not plan.candidates


def test_precision_auto_keeps_fp32_where_bf16_is_not_faster():
    plan = _plan(precision="auto")
    assert plan.precision == "fp32"  # the CPU's rates: bf16 no faster, and inexact
    on_gpu = _plan(precision="auto", speed=lambda precision: machine_speed("cuda", precision))
    bf16 = next(c for c in on_gpu.candidates if c["precision"] == "bf16")
    fp32 = next(c for c in on_gpu.candidates if c["precision"] == "fp32")
    assert (on_gpu.precision == "bf16") == (bf16["modelled_step_s"] <= INEXACT_MARGIN * fp32["modelled_step_s"])


def test_a_run_resolves_auto_and_trains_under_the_budget(synthetic_data):
    free = train(tiny_config(epochs=1, checkpoint_blocks=False), data=synthetic_data, out=None, quiet=True)
    budget = int(max(m["peak_bytes"] for m in free.modules) * 0.8)
    result = train(tiny_config(epochs=1, budget=budget), data=synthetic_data, out=None, quiet=True)
    plan = result.extra["plan"]
    assert plan["checkpoint_blocks"] in (True, False) and plan["precision"] == "fp32"
    assert plan["estimates"]["notes"], "the plan says why"
    assert all(m["peak_bytes"] <= budget for m in result.modules)
    unbudgeted = train(tiny_config(epochs=1), data=synthetic_data, out=None, quiet=True)
    assert unbudgeted.extra["plan"]["checkpoint_blocks"] is False  # auto without a budget: off


def test_cache_dtype_auto_halves_the_cache_only_when_fp32_would_leave_host_memory(tmp_path):
    from edgetrgl.cache.placement import plan_cache
    from edgetrgl.modular import build_modular

    blocknet = create_model("resnet20", in_channels=3, image_size=16, width=4)
    net = build_modular(blocknet, 3, 10, torch.zeros(2, 3, 16, 16))
    options = dict(requested="auto", views=1, keep=False, needs_cache=True, net=net, input_shape=(3, 16, 16),
                   num_train=512, num_test=256, folder=tmp_path / "cache", scratch=False,
                   free_ram=1 << 40, free_disk=1 << 40)  # the machine is roomy: ram_limit decides
    full = plan_cache(dtype="fp32", ram_limit=None, **options).bytes_needed
    roomy = plan_cache(dtype="auto", ram_limit=4 * full, **options)
    assert (roomy.mode, roomy.dtype) == ("host", "fp32")
    halved = plan_cache(dtype="auto", ram_limit=int(1.5 * full), **options)  # fp32 would need disk; fp16 fits RAM
    assert (halved.mode, halved.dtype, halved.bytes_needed) == ("host", "fp16", full // 2)
    assert halved.reason.startswith("fp16 storage (fp32 would be disk")
    tight = plan_cache(dtype="auto", ram_limit=full // 4, **options)
    assert (tight.mode, tight.dtype) == ("disk", "fp16")


def test_a_plan_saved_before_the_step_options_takes_them_from_its_config(synthetic_data):
    from edgetrgl.planning.run_plan import RunPlan
    from edgetrgl.training.run import plan_run

    cfg = tiny_config(checkpoint_blocks=True, precision="bf16")
    plan, _ = plan_run(cfg, synthetic_data[2])
    old = {k: v for k, v in plan.to_dict().items() if k not in ("checkpoint_blocks", "precision")}
    restored = RunPlan.from_dict(old, config=cfg)
    assert restored.checkpoint_blocks is True and restored.precision == "bf16"
    assert RunPlan.from_dict(plan.to_dict()) == plan

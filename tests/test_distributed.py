"""Multi-process training: placement from the environment, sharding, DDP (two gloo processes on
the CPU) against one process with the whole batch and, bit for bit, against one process adding
the gradients in DDP's order, and ranks agreeing on the run directory."""

from __future__ import annotations

import copy
import faulthandler
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import default_collate

from burstjdd.errors import ConfigError
from burstjdd.train.checkpoint import LOG_NAME, load_checkpoint
from burstjdd.train.config import config_from_dict, config_to_dict
from burstjdd.train.distributed import (
    DistContext,
    from_env,
    init_process_group,
    local_batch_size,
    rank_indices,
    shutdown,
    wrap_model,
)
from burstjdd.train.loop import (
    Runtime,
    build_training_dataset,
    make_train_state,
    train,
    train_step,
)

STEPS = 3
# DDP vs one process with the whole batch in one pass, at update 0 (same weights, same samples):
# the gradient mean over the 4 samples is summed in another order (each rank averages its 2, then
# the all-reduce averages the 2 ranks; the convolutions reduce their weight gradients over 2
# samples instead of 4), so float32 rounding differs: measured 5e-6 of each tensor's largest
# gradient, allowed 2e-5. A parameter whose true gradient is 0 (the DSNet's last bias cancels in
# the block-matching MAD) holds pure rounding noise, at the scale of the model's largest gradient
# times float32 eps: allowed 1e-6 of that.
GRAD_RTOL, GRAD_NOISE = 2e-5, 1e-6
# Later updates are NOT compared with the one-pass run at a tolerance: Adam's first updates
# m / sqrt(v) are about lr·sign(g) per element, so an element whose gradient is within rounding
# error of 0 moves by ±lr in a direction set by the rounding, and the trajectories part by ~lr in
# a few elements. How far the losses then drift apart depends on the CPU's kernels, not on load:
# on an AVX-512 EPYC the step-3 losses of the two runs differed by 2.9e-5 relative in every run,
# idle or loaded, while capping oneDNN at AVX2 gave 1.5e-6 and the one-pass run alone moved by
# 2.7e-5 between the two. So the whole run is compared with a one-process reference that adds
# the gradients in DDP's order (_ddp_in_one_process), and must match it bit for bit.


def test_placement_from_the_environment():
    assert from_env({}) == DistContext(0, 1, 0)
    assert from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == DistContext(3, 4, 1)
    assert from_env({"RANK": "1", "WORLD_SIZE": "2"}).is_main is False
    with pytest.raises(ConfigError, match="integers"):
        from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="rank 2 of 2"):
        DistContext(2, 2)


def test_ranks_split_each_global_batch():
    # global batch 6 over 3 ranks: step 4 is samples 24..29, two per rank, in rank order
    slices = [rank_indices(4, 6, DistContext(r, 3)) for r in range(3)]
    assert [list(s) for s in slices] == [[24, 25], [26, 27], [28, 29]]
    assert local_batch_size(6, DistContext(0, 3)) == 2
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        local_batch_size(5, DistContext(0, 2))


@pytest.fixture(autouse=True)
def spawn_error_files(tmp_path, monkeypatch):
    """mp.spawn gives each worker an error file (pytorch-errorfile-*.pickle in the temp folder),
    written when the worker raises and never deleted by torch: keep them in this test's folder
    and delete them afterwards (the message reached the test through the exception)."""
    folder = tmp_path / "spawn"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    for path in folder.glob("pytorch-errorfile-*"):
        path.unlink()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_step_gradients(tree: dict, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Gradients of update 0 (from the seeded initial parameters) on this rank's slice of the
    global batch, after DDP's averaging."""
    cfg = config_from_dict(tree)
    rt = Runtime(torch.device("cpu"), None, ctx)
    state = make_train_state(cfg, rt.device)
    model = wrap_model(state.model, ctx, rt.device, cfg.data.frames)
    dataset = build_training_dataset(cfg)
    batch = default_collate([dataset[i] for i in rank_indices(0, cfg.optim.batch_size, ctx)])
    train_step(model, state, batch, cfg, rt)  # the gradient stays in .grad after the update
    return {k: p.grad.clone() for k, p in state.model.named_parameters()
            if p.requires_grad}  # frozen parts (a fixed pretrained demosaicker) have none


def _run(tree: dict, run_dir: str, ctx: DistContext) -> None:
    grads = _first_step_gradients(tree, ctx)
    if ctx.is_main:
        torch.save(grads, f"{run_dir}.grads.pt")
    train(config_from_dict(tree), run_dir, ctx=ctx, progress=False, echo=False)


def _ddp_in_one_process(tree: dict, world: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    """What ``world`` DDP processes compute, in their float order, in this one process: at each
    update every rank's slice gets its own forward and backward (on a copy of the state, as on
    that rank), the slices' gradients are scaled by 1/world (exact: a power of 2) and summed (DDP
    scales each gradient while copying it into its bucket, then all-reduces the sum; a sum of 2
    is the same in either order), and one Adam update follows; the logged loss is the float64
    mean of the slices' losses (all_reduce_mean). Returns every step's loss and the final
    weights."""
    cfg = config_from_dict(tree)
    rt = Runtime(torch.device("cpu"), None, DistContext())
    state = make_train_state(cfg, rt.device)
    dataset = build_training_dataset(cfg)
    losses = []
    for step in range(cfg.schedule.total_steps):
        grads, totals = [], []
        for rank in range(world):
            part = copy.deepcopy(state)
            indices = rank_indices(step, cfg.optim.batch_size, DistContext(rank, world))
            totals.append(train_step(part.model, part, default_collate(
                [dataset[i] for i in indices]), cfg, rt)["total"])
            grads.append([p.grad for p in part.model.parameters()])
        for p, *parts in zip(state.model.parameters(), *grads):
            if p.requires_grad:  # frozen parts (a fixed pretrained demosaicker) have none
                p.grad = sum(g * (1.0 / world) for g in parts)
        state.optimizer.step()  # the rest of train_step's update
        state.scheduler.step()
        state.step += 1
        losses.append(sum(totals) / world)
    return losses, state.model.state_dict()


def _c10d_threads() -> list[str] | None:
    """Names of this process's threads that belong to torch.distributed: gloo's
    (gloo_tcp_loop, pt_gloo_runloop) and the TCPStore server's (pt_tcpstore_uv); None where
    there is no /proc to list them."""
    if sys.platform != "linux":
        return None
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # the thread ended meanwhile
            continue
    return sorted(n for n in names if n.startswith(("gloo", "pt_gloo", "pt_tcpstore")))


def _start_worker() -> None:
    """One torch thread; should the process die by a signal (an abort in C++), its stderr, which
    the test's report shows, gets the Python stack of every thread."""
    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)


def _worker(rank: int, world: int, port: int, tree: dict, run_dir: str) -> None:
    _start_worker()
    ctx = DistContext(rank, world, rank)
    init_process_group(ctx, torch.device("cpu"), init_method=f"tcp://127.0.0.1:{port}")
    try:
        _run(tree, run_dir, ctx)
    finally:
        shutdown()


def test_two_processes_train_like_one_process_with_the_whole_batch(stills, tmp_path):
    tree = config_to_dict(config_from_dict({
        "model": {"preset": "compact", "overrides": {"nf": 8, "deformable_groups": 2,
                                                     "extract_blocks": 1, "dsnet_width": 4}},
        "data": {"paths": [str(stills)], "crop": 32, "search_radius": 8, "frames": 3,
                 "workers": 0},
        "optim": {"batch_size": 4},  # global: 2 per rank with 2 processes
        "schedule": {"total_steps": STEPS},
        "run": {"log_every": 1, "device": "cpu", "precision": "fp32"},
    }))
    mp.spawn(_worker, args=(2, _free_port(), tree, str(tmp_path / "ddp")), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: the same kernels, hence the same rounding
    try:
        one_grads = _first_step_gradients(tree, DistContext())
        ref_losses, ref_weights = _ddp_in_one_process(tree, 2)
    finally:
        torch.set_num_threads(threads)

    ddp_grads = torch.load(tmp_path / "ddp.grads.pt")
    noise = GRAD_NOISE * max(float(g.abs().max()) for g in one_grads.values())
    for key, g in one_grads.items():
        tol = GRAD_RTOL * float(g.abs().max()) + noise
        assert float((ddp_grads[key] - g).abs().max()) <= tol, key
    # the gradients stand far above the noise floor: a sum over the ranks (2x the mean) fails above
    assert any(float(g.abs().max()) > 1e3 * noise for g in one_grads.values())

    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert ddp.step == STEPS and ddp.model.keys() == ref_weights.keys()
    # every update used the right slices, averaged as DDP does: the same weights, bit for bit
    assert [k for k in ref_weights if not torch.equal(ddp.model[k], ref_weights[k])] == []
    # only rank 0 wrote: one scalars row per step, holding the mean loss over both ranks
    rows = (tmp_path / "ddp" / "scalars.csv").read_text().splitlines()
    assert len(rows) == 1 + STEPS
    assert [r.split(",")[1] for r in rows[1:]] == [f"{t:.8g}" for t in ref_losses]
    assert len({round(t) for t in ref_losses}) == STEPS  # the loss changes from step to step


TINY = {
    "model": {"preset": "compact", "overrides": {"nf": 8, "deformable_groups": 2,
                                                 "extract_blocks": 1, "dsnet_width": 4}},
    "data": {"crop": 32, "search_radius": 8, "frames": 3, "workers": 0},
    "optim": {"batch_size": 2},
    "schedule": {"total_steps": 1},
    "run": {"log_every": 1, "device": "cpu", "precision": "fp32"},
}
LATE_S = 3.0  # rank 1 starts this late: rank 0 has long created and filled the run directory


def _late_worker(rank: int, world: int, port: int, tree: dict, run_dir: str, out: str) -> None:
    """Rank 1 starts training LATE_S seconds after rank 0, then both train the same run directory
    again; each rank records what it saw in out.rankR."""
    _start_worker()
    ctx = DistContext(rank, world, rank)
    init_process_group(ctx, torch.device("cpu"), init_method=f"tcp://127.0.0.1:{port}")
    seen = []
    try:
        if rank == 1:
            time.sleep(LATE_S)
        for _ in range(2):
            try:
                result = train(config_from_dict(tree), run_dir, ctx=ctx, progress=False,
                               echo=False)
                # every rank returns only after rank 0 has closed the run (last log line)
                closed = "stopped at step" in (Path(run_dir) / LOG_NAME).read_text()
                seen.append(f"step {result.step}, closed {closed}")
            except ConfigError as exc:
                seen.append(f"ConfigError: {exc}")
    finally:
        shutdown()
        seen.append(f"threads left {_c10d_threads()}")
        with open(f"{out}.rank{rank}", "w") as f:
            f.write("\n".join(seen))


def test_ranks_follow_rank_0s_verdict_on_the_run_directory(stills, tmp_path, spawn_error_files):
    # a late rank 1 once checked the folder itself, found what rank 0 had written meanwhile and
    # stopped with "run directory exists and is not empty"; now rank 0 alone decides
    tree = config_to_dict(config_from_dict({**TINY, "data": {**TINY["data"],
                                                              "paths": [str(stills)]}}))
    out = tmp_path / "seen"
    mp.spawn(_late_worker, args=(2, _free_port(), tree, str(tmp_path / "run"), str(out)),
             nprocs=2, join=True)
    first, second = ([line for line in (tmp_path / f"seen.rank{r}").read_text().splitlines()]
                     for r in (0, 1))
    assert first[0] == second[0] == "step 1, closed True"
    # the second start finds the finished run: every rank stops with rank 0's one-line error
    assert first[1] == second[1] and "exists and is not empty" in first[1]
    if sys.platform == "linux":  # thread names come from /proc
        # shutdown() ended the group: no gloo or TCPStore thread is left to die with the
        # interpreter (the likely source of the abort that once failed this test)
        assert first[2] == second[2] == "threads left []"
    assert not list(spawn_error_files.iterdir())

"""``burstjdd restore ROOT --batch -o OUT_DIR``: which bursts, stopping and continuing, failures,
and two torchrun-style processes giving the same files as one (classical model, tiny bursts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from burstjdd.cli import _batch, main
from burstjdd.errors import ConfigError
from burstjdd.raw import writers
from burstjdd.raw.npz import write_npz
from burstjdd.restore import Restorer
from burstjdd.synth.burst import simulate_burst
from burstjdd.train.distributed import DistContext

pytestmark = pytest.mark.usefixtures("one_thread")

N_BURSTS = 6


def _burst(seed: int):
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(3, 24, 32, generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return simulate_burst(photo, n_frames=3, max_shift=4, n_objects=0, crop=(48, 64), seed=seed)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder of N_BURSTS small .npz bursts, b0 .. b5."""
    folder = tmp_path_factory.mktemp("bursts")
    for k in range(N_BURSTS):
        write_npz(_burst(k), folder / f"b{k}.npz")
    return folder


def _batch_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return ["restore", str(root), "--batch", "-o", str(out), "--model", "classical", "--quiet",
            *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------- the listing


def test_bursts_are_npz_files_and_sub_folders_of_raw_files_one_level_deep(tmp_path):
    root = tmp_path / "root"
    for folder, names in {"b": ["x.DNG", "y.dng"], "c": ["photo.jpg"], "out": ["old.dng"],
                          "d": [], "e/deeper": ["z.dng"]}.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_bytes(b"")
    for name in ("a.npz", ".hidden.npz", "notes.txt"):
        (root / name).write_bytes(b"")
    (root / "link").symlink_to(root / "b")              # a linked folder of raw files counts
    (root / "loop").symlink_to(root)                    # a link back up is listed once, no more
    (root / "gone.npz").symlink_to(root / "missing")    # restoring it will say why it fails
    (root / "self").symlink_to(root / "self")           # a link to itself is no folder
    jobs = _batch.find_bursts(root, exclude=root / "out")
    assert [(j.name, j.source.name) for j in jobs] == [
        ("a", "a.npz"), ("b", "b"), ("gone", "gone.npz"), ("link", "link")]


def test_a_listing_with_two_bursts_of_one_name_or_none_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.dng").write_bytes(b"")
    (tmp_path / "a.npz").write_bytes(b"")
    with pytest.raises(ConfigError, match="bursts a and a.npz would write the same output"):
        _batch.find_bursts(tmp_path)
    with pytest.raises(ConfigError, match="holds raw files itself: restore it without --batch"):
        _batch.find_bursts(tmp_path / "a")
    with pytest.raises(ConfigError, match="needs a folder of bursts"):
        _batch.find_bursts(tmp_path / "a.npz")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_share_the_bursts_with_none_twice_and_none_lost(world):
    jobs = [_batch.Job(f"b{k}", Path(f"b{k}.npz")) for k in range(7)]
    shares = [_batch.rank_share(jobs, DistContext(rank, world, rank)) for rank in range(world)]
    assert sorted((j for s in shares for j in s), key=jobs.index) == jobs
    assert sum(len(s) for s in shares) == len(jobs)


# ------------------------------------------------------------------------------- running


def test_a_stopped_batch_continues_where_it_was_and_redoes_nothing(root, tmp_path, monkeypatch,
                                                                   capsys):
    out = tmp_path / "out"
    restores = []
    real_restore, real_write = Restorer.restore, writers.write_image

    def counting_restore(self, burst, *args, **kwargs):
        restores.append(burst)
        return real_restore(self, burst, *args, **kwargs)

    def stop_at_the_fourth(image, path, *args, **kwargs):
        if len(restores) == 4:
            raise KeyboardInterrupt
        real_write(image, path, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore", counting_restore)
    monkeypatch.setattr(writers, "write_image", stop_at_the_fourth)
    assert main(_batch_argv(root, out, "--format", "tif")) == 130
    first = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert sorted(first) == ["b0.tif", "b1.tif", "b2.tif"]  # no partial or temporary file

    monkeypatch.setattr(writers, "write_image", real_write)
    capsys.readouterr()
    assert main(_batch_argv(root, out, "--format", "tif")) == 0
    assert capsys.readouterr().out.startswith("done 3, skipped 3, failed 0")
    assert len(restores) == 4 + 3
    assert sorted(p.name for p in out.iterdir()) == [f"b{k}.tif" for k in range(N_BURSTS)]
    assert {name: ((out / name).stat().st_mtime_ns, (out / name).read_bytes())
            for name in first} == first


def test_failed_bursts_are_summarised_one_line_each_and_the_rest_are_restored(root, tmp_path,
                                                                             capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in (0, 1, 2):
        (bad / f"b{k}.npz").write_bytes((root / f"b{k}.npz").read_bytes())
    (bad / "truncated.npz").write_bytes((root / "b0.npz").read_bytes()[:500])
    (bad / "corrupt").mkdir()
    (bad / "corrupt" / "frame.dng").write_text("not a raw file")
    out = tmp_path / "out"
    (out / "b2.png").mkdir(parents=True)  # an output path that cannot be written
    assert main(_batch_argv(bad, out)) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("done 2, skipped 0, failed 3")
    errors = captured.err.strip().splitlines()
    assert [line.split(":")[1:3] for line in errors] == [
        [" error", " burst b2"], [" error", " burst corrupt"], [" error", " burst truncated"]]
    assert "output path is a directory" in errors[0] and "not a readable raw" in errors[1]
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["b0.png", "b1.png", "b2.png"]


@pytest.mark.slow
def test_two_torchrun_processes_write_the_files_of_one_process(root, tmp_path, capsys,
                                                              monkeypatch):
    """Ranks from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK): rank 1 in a
    process of its own, rank 0 in this one, at the same time. Each takes every other burst, so
    together they write each output once, the same bytes as one process."""
    assert main(_batch_argv(root, tmp_path / "one")) == 0
    capsys.readouterr()
    two = _batch_argv(root, tmp_path / "two")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2"}
    rank1 = subprocess.Popen([sys.executable, "-m", "burstjdd", *two],
                             env={**env, "RANK": "1", "LOCAL_RANK": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
            monkeypatch.setenv(name, value)
        assert main(two) == 0
    finally:
        out1, err1 = rank1.communicate(timeout=300)
    assert rank1.returncode == 0, err1[-1000:]
    assert [capsys.readouterr().out.split(";")[0], out1.split(";")[0]] == [
        "done 3, skipped 0, failed 0 (rank 0 of 2)", "done 3, skipped 0, failed 0 (rank 1 of 2)"]
    one = _files(tmp_path / "one")
    assert sorted(one) == [f"b{k}.png" for k in range(N_BURSTS)]
    assert _files(tmp_path / "two") == one

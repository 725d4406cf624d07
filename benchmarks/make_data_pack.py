"""Make the training data pack that travels to a lent GPU (at most 40 MiB, git-ignored).

    python benchmarks/make_data_pack.py [--src /work/shared/data/train] [--out .pack]
        [--max-mib 40] [--quality 90] [--val-stills set14] [--val-clips gopro_rafting]

The device machine sees only the checkout (64 MiB in all, ``../shared`` stays behind) and has no
PyAV, so the training data go as a folder inside the checkout, named in the run's ``carry``:

* ``train/stills/<set>/*.webp``: every image of ``<src>/stills/<set>`` (``stills:`` source);
* ``train/clips/<clip>/*.webp``: every frame of ``<src>/video/<clip>`` (REDS layout), then
  windows of ``--window`` consecutive frames of each ``<src>/video_files/*`` video, decoded at
  half size (as ``VideoFileSource`` reads them for training), spread evenly over each video and
  added round-robin while the pack stays under ``--max-mib``;
* ``val/stills/<set>`` and ``val/clips/<clip>``: the held-out validation sets (never trained on);
* ``manifest.json``: what is where, sizes, and the data paths to give ``burstjdd train``,
  relative to the pack: ``train_paths`` (``stills:train/stills``, ``train/clips``) and
  ``val_paths`` (``stills:val/stills``, ``val/clips``).

Images are re-encoded as lossy WebP (``--quality``, default 90; the sources are lossless WebP,
about 4x larger); when even the images exceed the budget the quality steps down by 5 (to 70 at
worst, else an error). ``burstjdd train --data stills:.pack/train/stills --data .pack/train/clips``
reads the pack as it is.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
MIN_QUALITY = 70
MIB = 2**20


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _encode(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def _encode_file(job: tuple[str, int]) -> bytes:
    path, quality = job
    with Image.open(path) as img:
        return _encode(img, quality)


def _encode_array(job: tuple[np.ndarray, int]) -> bytes:
    array, quality = job
    return _encode(Image.fromarray(array), quality)


def _plan_folders(src: Path, val_stills: set[str], val_clips: set[str]
                  ) -> list[tuple[str, list[Path]]]:
    """(pack folder, source images) for every still set and image clip of ``src``."""
    folders = []
    for kind, val_names, dest in (("stills", val_stills, "stills"), ("video", val_clips, "clips")):
        root = src / kind
        if not root.is_dir():
            continue
        for sub in sorted(d for d in root.iterdir() if d.is_dir()):
            images = _images(sub)
            if images:
                split = "val" if sub.name in val_names else "train"
                folders.append((f"{split}/{dest}/{sub.name}", images))
    missing = (val_stills | val_clips) - {f.split("/")[-1] for f, _ in folders
                                          if f.startswith("val/")}
    if missing:
        raise SystemExit(f"make_data_pack: validation folder(s) {sorted(missing)} not found "
                         f"under {src}/stills or {src}/video")
    return folders


def _radical_inverse(i: int) -> float:
    """Van der Corput radical inverse of i in base 2: 0, 1/2, 1/4, 3/4, 1/8, ..."""
    out, scale = 0.0, 0.5
    while i:
        out += scale * (i & 1)
        i, scale = i >> 1, scale / 2
    return out


def _video_windows(src: Path, window: int, downscale: int) -> list[list[tuple[str, object]]]:
    """Per video file: its windows in the order they are added (spread over the video), each a
    list of (pack folder, frame getter)."""
    folder = src / "video_files"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) \
        if folder.is_dir() else []
    if not files:
        return []
    try:
        from burstjdd.synth.sources import VideoFileSource
        source = VideoFileSource(files, downscale=downscale)
    except Exception as exc:  # noqa: BLE001 - no PyAV here, or an unreadable file: go without
        print(f"make_data_pack: video files skipped ({exc})", file=sys.stderr)
        return []
    per_video = []
    for path, decoder in zip(files, source.decoders):
        n = len(decoder)
        count = n // window
        if count < 1:
            continue
        # window starts spread over the whole video, visited in van der Corput order (0, 1/2,
        # 1/4, 3/4, ...) so that a budget admitting only a few windows takes them far apart
        starts = [round(i * (n - window) / max(count - 1, 1)) for i in range(count)]
        order = sorted(range(count), key=lambda i: _radical_inverse(i))
        per_video.append([(f"train/clips/vf_{path.stem}_{starts[i]:05d}",
                           (decoder, starts[i])) for i in order])
    return per_video


def make_pack(src: Path, out: Path, *, max_bytes: int, quality: int = 90, window: int = 16,
              downscale: int = 2, val_stills: tuple[str, ...] = ("set14",),
              val_clips: tuple[str, ...] = ("gopro_rafting",), workers: int | None = None,
              force: bool = False) -> dict:
    """Build the pack (module docstring) and return its manifest."""
    if out.exists():
        if not force and any(out.iterdir()):
            raise SystemExit(f"make_data_pack: {out} exists and is not empty (use --force)")
        shutil.rmtree(out)
    folders = _plan_folders(src, set(val_stills), set(val_clips))
    jobs = [(dest, p) for dest, images in folders for p in images]
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        while True:
            blobs = list(pool.map(_encode_file, [(str(p), quality) for _, p in jobs],
                                  chunksize=4))
            used = sum(map(len, blobs))
            if used <= max_bytes or quality <= MIN_QUALITY:
                break
            quality -= 5
        if used > max_bytes:
            raise SystemExit(f"make_data_pack: the images alone take {used / MIB:.1f} MiB at "
                             f"quality {quality} > {max_bytes / MIB:.1f} MiB")
        files: dict[str, bytes] = {}
        for (dest, p), blob in zip(jobs, blobs):
            files[f"{dest}/{p.stem}.webp"] = blob
        added_windows = 0
        queues = _video_windows(src, window, downscale)
        while any(queues):
            for queue in queues:
                if not queue:
                    continue
                dest, (decoder, start) = queue.pop(0)
                frames = [decoder.get(start + i) for i in range(window)]
                encoded = list(pool.map(_encode_array, [(f, quality) for f in frames]))
                if used + sum(map(len, encoded)) > max_bytes:
                    queue.clear()  # this video's windows are alike in size: stop its queue
                    continue
                for i, blob in enumerate(encoded):
                    files[f"{dest}/{i:03d}.webp"] = blob
                used += sum(map(len, encoded))
                added_windows += 1
    for name, blob in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    summary: dict[str, dict[str, int]] = {}
    for name, blob in files.items():
        folder = name.rsplit("/", 1)[0]
        entry = summary.setdefault(folder, {"files": 0, "bytes": 0})
        entry["files"] += 1
        entry["bytes"] += len(blob)
    manifest = {
        "format": "burstjdd-data-pack", "format_version": 1,
        "source": str(src), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quality": quality, "max_bytes": max_bytes, "total_bytes": used,
        "video_windows": added_windows, "window_frames": window, "video_downscale": downscale,
        "train_paths": ["stills:train/stills", "train/clips"],
        "val_paths": ["stills:val/stills", "val/clips"],
        "validation": {"stills": list(val_stills), "clips": list(val_clips)},
        "folders": summary,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def travel_bytes(root: Path, carried: list[Path]) -> int | None:
    """Bytes that a device call sends: the checkout's tracked and untracked-not-ignored files
    (``git ls-files -co --exclude-standard``) plus the ``carried`` folders; None outside git."""
    import subprocess

    try:
        names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                               capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    total = sum((root / n).stat().st_size for n in names if n and (root / n).is_file())
    for folder in carried:
        total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total


def pack_paths(pack: Path, key: str) -> list[str]:
    """The manifest's ``train_paths`` / ``val_paths`` with the pack folder put in (keeping
    ``stills:`` prefixes), ready for ``data.paths`` / ``data.val_paths``."""
    manifest = json.loads((pack / "manifest.json").read_text())
    out = []
    for spec in manifest[key]:
        kind, sep, rest = spec.partition(":")
        out.append(f"{kind}:{pack / rest}" if sep and kind in ("stills", "clips", "video")
                   else str(pack / spec))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("/work/shared/data/train"))
    parser.add_argument("--out", type=Path, default=Path(".pack"))
    parser.add_argument("--max-mib", type=float, default=40.0)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--window", type=int, default=16,
                        help="frames per window taken from a video file")
    parser.add_argument("--downscale", type=int, default=2, help="video files: decode at 1/F")
    parser.add_argument("--val-stills", nargs="*", default=["set14"])
    parser.add_argument("--val-clips", nargs="*", default=["gopro_rafting"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="replace an existing pack")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    manifest = make_pack(args.src, args.out, max_bytes=int(args.max_mib * MIB),
                         quality=args.quality, window=args.window, downscale=args.downscale,
                         val_stills=tuple(args.val_stills), val_clips=tuple(args.val_clips),
                         workers=args.workers, force=args.force)
    for folder, entry in sorted(manifest["folders"].items()):
        print(f"{folder:45s} {entry['files']:4d} files {entry['bytes'] / MIB:7.2f} MiB")
    print(f"total {manifest['total_bytes'] / MIB:.2f} MiB (limit {args.max_mib:g}), quality "
          f"{manifest['quality']}, {manifest['video_windows']} video windows, "
          f"{time.perf_counter() - t0:.0f} s -> {args.out}")
    root = Path(__file__).resolve().parents[1]
    out = args.out.resolve()
    if out.is_relative_to(root):
        travel = travel_bytes(root, [out])
        if travel is not None:
            print(f"a device call with carry=[{str(out.relative_to(root))!r}] sends "
                  f"{travel / MIB:.1f} MiB (limit 64 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

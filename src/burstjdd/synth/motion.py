"""Synthetic burst motion: sample it into frozen dataclasses, then apply it deterministically.

Geometry (all in full-resolution pixels of the output crop, (y, x) order, pixel centres on
integer coordinates, c = ((H-1)/2, (W-1)/2) the crop centre):

* Camera (background). Frame t sees the reference pixel u at

      v = c + A_t (u - c) + s_t,      A_t = z_t R(theta_t)   (a similarity)

  so the background displacement is ``flow_t(u) = (A_t - I)(u - c) + s_t``. ``s_t`` follows a
  random walk with s_ref = 0 whose steps between neighbouring frames reach ``max_shift``.
* Objects (foreground layers, drawn on top of the background in their order). Object k is a
  soft-edged ellipse cut from a texture; it is rigid and translates only: its centre p_k (in
  the reference) goes to ``q_k(t) = c + A_t (p_k - c) + s_t + (t - ref) v_k`` (carried by the
  camera plus its own velocity v_k), so every pixel it owns moves by ``q_k(t) - p_k``.

Frames are crops of a larger source canvas (the *scene*): frame t samples the scene at
``origin + c + A_t^-1 (v - c - s_t)``. ``motion_bbox`` says which part of the scene the motion
reads (the margin needed around the reference crop); ``apply_motion`` raises ``DataError`` when
the scene is too small. Untransformed frames (the reference: A = I, s = 0) are copied from the
scene, not interpolated, so the ground truth is exact. Zoom is kept within +-10 % (+-1 % per
frame by default) so the bicubic warp needs no anti-aliasing filter.

The ground truth returned with the frames follows docs/internals.md: ``flow[t, :, y, x] =
(dy, dx)`` such that reference pixel (y, x) appears at (y + dy, x + dx) in frame t, and
``valid[t, y, x]`` is False where that pixel is occluded in t by an object layer above its own
layer, leaves the frame, or lies on a soft object edge (a mix of two motions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from burstjdd.errors import ConfigError, DataError

# Pixels within this distance of an occluding object's alpha ramp count as occluded: bilinear
# resampling of a frame at a valid position must never touch a pixel mixed with an occluder.
OCCLUSION_GUARD_PX = 2.0
# The bicubic kernel reads 2 pixels on each side of a sample position.
BICUBIC_SUPPORT_PX = 2
MAX_ZOOM_DEVIATION = 0.1


@dataclass(frozen=True)
class ObjectLayer:
    """One independently moving foreground object (a soft ellipse cut out of a texture).

    centre: (y, x) in the reference frame; radii: (ry, rx); angle: ellipse orientation
    (radians); velocity: (vy, vx) per frame, relative to the camera-carried position;
    texture: (fy, fx) in [0, 1], where the content is cut from, as a fraction of the texture's
    free range (resolved against the texture's size in ``apply_motion``); softness: width of
    the linear alpha ramp across the edge. Lengths in full-resolution pixels.
    """

    centre: tuple[float, float]
    radii: tuple[float, float]
    angle: float
    velocity: tuple[float, float]
    texture: tuple[float, float]
    softness: float = 1.5

    def __post_init__(self) -> None:
        if min(self.radii) <= 0 or self.softness <= 0:
            raise ConfigError(f"object radii {self.radii} and softness {self.softness} must be > 0")
        if not all(0.0 <= f <= 1.0 for f in self.texture):
            raise ConfigError(f"object texture position {self.texture} must lie in [0, 1]")

    @property
    def extent(self) -> float:
        """Radius (px) of the disc that holds every pixel with non-zero alpha."""
        return max(self.radii) + self.softness


@dataclass(frozen=True)
class MotionParams:
    """Per-frame motion of a burst (see the module docstring for the geometry).

    translation[t] = s_t (dy, dx) in px, rotation[t] = theta_t (radians), zoom[t] = z_t, all
    relative to the reference frame ``ref`` (which has 0, 0, 1); objects in depth order.
    """

    ref: int
    translation: tuple[tuple[float, float], ...]
    rotation: tuple[float, ...]
    zoom: tuple[float, ...]
    objects: tuple[ObjectLayer, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.translation)
        if n < 1 or len(self.rotation) != n or len(self.zoom) != n:
            raise ConfigError("translation, rotation and zoom must have one entry per frame")
        if not 0 <= self.ref < n:
            raise ConfigError(f"reference index {self.ref} outside 0..{n - 1}")
        bad = next((t for t, z in enumerate(self.zoom) if not abs(z - 1.0) <= MAX_ZOOM_DEVIATION),
                   None)
        if bad is not None:
            raise ConfigError(f"zoom must stay within 1 +- {MAX_ZOOM_DEVIATION} (frame {bad} has "
                              f"{self.zoom[bad]:.4g})")

    @property
    def n_frames(self) -> int:
        return len(self.translation)

    def matrices(self) -> Tensor:
        """A_t = z_t R(theta_t) acting on (y, x) column vectors: (N, 2, 2) float64."""
        theta = torch.tensor(self.rotation, dtype=torch.float64)
        z = torch.tensor(self.zoom, dtype=torch.float64)
        cos, sin = torch.cos(theta) * z, torch.sin(theta) * z
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def constant_motion(n_frames: int, ref: int, step: tuple[float, float]) -> MotionParams:
    """Pure translation at constant velocity: s_t = (t - ref) * step, no rotation/zoom/objects.

    The fixed-shift stress test (docs/protocol.md "Benchmarks", 2) uses this.
    """
    s = tuple(((t - ref) * float(step[0]), (t - ref) * float(step[1])) for t in range(n_frames))
    return MotionParams(ref, s, (0.0,) * n_frames, (1.0,) * n_frames)


def motion_margin(
    n_frames: int,
    ref: int,
    max_shift: float,
    *,
    max_rotation_deg: float = 0.5,
    max_zoom: float = 0.01,
) -> int:
    """Upper bound (px) of the scene margin, per side, that any ``sample_motion`` draw with these
    arguments needs around the output crop (bicubic support included): a scene of
    (H + 2 m, W + 2 m) always holds an (H, W) crop.

    Per axis, |u - v| <= (|s| (1 + sin theta) + |(I - A) (v - c)|) / z: the walk stays in the
    box |s_y|, |s_x| <= max_shift and each of the n = max(ref, N - 1 - ref) steps away from the
    reference moves the crop corners by at most max_shift / 4 through rotation/zoom.
    """
    steps = max(ref, n_frames - 1 - ref)
    theta = min(math.radians(max_rotation_deg) * steps, math.pi / 2)
    z_min = max(math.exp(-max_zoom * steps), 1.0 - MAX_ZOOM_DEVIATION)  # the walk stays inside
    bound = (max_shift * (1 + math.sin(theta)) + steps * max_shift / 4) / z_min
    return math.ceil(bound) + BICUBIC_SUPPORT_PX + 1


def _corner_shift(zoom: float, theta: float, d_logz: float, d_theta: float, r_max: float) -> float:
    """How far a rotation/zoom step moves a point at distance r_max from the centre (px):
    ||A' - A|| r_max, with similarities z R(theta) as complex numbers (operator norm = modulus)."""
    before = zoom * complex(math.cos(theta), math.sin(theta))
    z, th = zoom * math.exp(d_logz), theta + d_theta
    return abs(z * complex(math.cos(th), math.sin(th)) - before) * r_max


def sample_motion(
    generator: torch.Generator,
    n_frames: int,
    ref: int,
    max_shift: float,
    n_objects: int,
    size: tuple[int, int],
    *,
    max_rotation_deg: float = 0.5,
    max_zoom: float = 0.01,
    object_speed: float | None = None,
    object_radius: tuple[float, float] = (0.08, 0.25),
    softness: float = 1.5,
) -> MotionParams:
    """Sample camera motion (random walk + small rotation/zoom) and ``n_objects`` moving objects.

    size: (H, W) of the output crop (px). Between neighbouring frames the background moves by at
    most ``max_shift`` px at every pixel (translation step + rotation/zoom change at the crop
    corners, bounded by the triangle inequality); one random step of each burst has a translation
    in [0.8, 1] of the budget, the others are uniform in [0, 1] of it, in random directions.
    The walk stays in the box |s_y|, |s_x| <= max_shift (hand-held jitter, bounded canvas).
    Rotation/zoom steps are uniform in +-max_rotation_deg / +-max_zoom (log), scaled down so
    they move the crop corners by at most max_shift / 4; a zoom step that would leave
    1 +- MAX_ZOOM_DEVIATION is reflected (only long bursts meet that bound). Objects: centres
    uniform in the crop, radii uniform in ``object_radius`` x min(H, W), speed uniform in
    [0, object_speed] (default max_shift / 4) relative to the background, in a random direction.
    """
    if n_frames < 1 or not 0 <= ref < n_frames:
        raise ConfigError(f"need n_frames >= 1 and 0 <= ref < n_frames (got {n_frames}, {ref})")
    if max_shift < 0 or n_objects < 0:
        raise ConfigError(f"max_shift ({max_shift}) and n_objects ({n_objects}) must be >= 0")
    h, w = size
    r_max = math.hypot(h - 1, w - 1) / 2
    bound = float(max_shift)
    n_steps = n_frames - 1
    draws = torch.rand((max(n_steps, 1), 3), generator=generator, dtype=torch.float64).tolist()
    angles = torch.rand((max(n_steps, 1), 8), generator=generator, dtype=torch.float64).tolist()
    peak = int(torch.randint(max(n_steps, 1), (1,), generator=generator))

    s = [(0.0, 0.0)] * n_frames
    theta, zoom = [0.0] * n_frames, [1.0] * n_frames
    # walk outward from the reference: (frame, previous frame) pairs, forward then backward
    order = [(t, t - 1) for t in range(ref + 1, n_frames)]
    order += [(t, t + 1) for t in range(ref - 1, -1, -1)]
    for k, (t, prev) in enumerate(order):
        u_rot, u_zoom, u_mag = draws[k]
        d_theta = math.radians(max_rotation_deg) * (2 * u_rot - 1)
        d_logz = max_zoom * (2 * u_zoom - 1)
        if abs(zoom[prev] * math.exp(d_logz) - 1.0) > MAX_ZOOM_DEVIATION:
            d_logz = -d_logz  # reflected: long bursts keep their zoom within the allowed range
        e = _corner_shift(zoom[prev], theta[prev], d_logz, d_theta, r_max)
        while e > bound / 4:  # scale the step down until the corners move <= max_shift / 4
            scale = 0.99 * bound / 4 / e
            d_theta, d_logz = scale * d_theta, scale * d_logz
            e = _corner_shift(zoom[prev], theta[prev], d_logz, d_theta, r_max)
        theta[t], zoom[t] = theta[prev] + d_theta, zoom[prev] * math.exp(d_logz)
        budget = max(bound - e, 0.0)
        mag = budget * (0.8 + 0.2 * u_mag if k == peak else u_mag)
        py, px = s[prev]
        for a in angles[k]:
            dy, dx = mag * math.sin(2 * math.pi * a), mag * math.cos(2 * math.pi * a)
            if abs(py + dy) <= bound and abs(px + dx) <= bound:
                break
        else:  # no random direction stays in the box: head for its centre (always fits)
            norm = math.hypot(py, px)
            dy, dx = -mag * py / norm, -mag * px / norm
        s[t] = (py + dy, px + dx)

    speed = bound / 4 if object_speed is None else float(object_speed)
    objects = []
    for _ in range(n_objects):
        u = torch.rand(9, generator=generator, dtype=torch.float64).tolist()
        lo, hi = object_radius
        radii = ((lo + (hi - lo) * u[2]) * min(h, w), (lo + (hi - lo) * u[3]) * min(h, w))
        v_mag, v_dir = speed * u[5], 2 * math.pi * u[6]
        objects.append(ObjectLayer(
            centre=(u[0] * (h - 1), u[1] * (w - 1)),
            radii=radii,
            angle=math.pi * u[4],
            velocity=(v_mag * math.sin(v_dir), v_mag * math.cos(v_dir)),
            texture=(u[7], u[8]),
            softness=softness,
        ))
    return MotionParams(ref, tuple(s), tuple(theta), tuple(zoom), tuple(objects))


def _centre(size: tuple[int, int]) -> Tensor:
    return torch.tensor([(size[0] - 1) / 2, (size[1] - 1) / 2], dtype=torch.float64)


def _affine_points(mat: Tensor, offset: Tensor, size: tuple[int, int]) -> Tensor:
    """mat @ p + offset for every pixel centre p = (y, x) of an (H, W) grid.

    mat (N, 2, 2), offset (N, 2) float64 -> (N, H, W, 2) float32 (built separably: cheap).
    """
    ys = torch.arange(size[0], dtype=torch.float32)[:, None]
    xs = torch.arange(size[1], dtype=torch.float32)[None, :]
    m, o = mat.float()[..., None, None], offset.float()[..., None, None]
    y = m[:, 0, 0] * ys + m[:, 0, 1] * xs + o[:, 0]
    x = m[:, 1, 0] * ys + m[:, 1, 1] * xs + o[:, 1]
    return torch.stack([y, x], -1)


def _identity_points(n: int, offset: Tensor, size: tuple[int, int]) -> Tensor:
    """p + offset[t] for every pixel p: offset (N, 2) or (2,) float64 -> (N, H, W, 2) float32."""
    eye = torch.eye(2, dtype=torch.float64).expand(n, 2, 2)
    return _affine_points(eye, offset.expand(n, 2), size)


def _camera_inverse(params: MotionParams, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(M, o) with u = M v + o = c + A_t^-1 (v - c - s_t): frame point -> reference point.

    M (N, 2, 2), o (N, 2) float64.
    """
    c = _centre(size)
    a_inv = torch.linalg.inv(params.matrices())
    s = torch.tensor(params.translation, dtype=torch.float64)
    return a_inv, c - torch.einsum("nij,nj->ni", a_inv, c + s)


def object_positions(params: MotionParams, size: tuple[int, int]) -> Tensor:
    """q_k(t): centre of every object in every frame, (N, K, 2) float64 (empty K allowed)."""
    n = params.n_frames
    if not params.objects:
        return torch.zeros(n, 0, 2, dtype=torch.float64)
    c = _centre(size)
    p = torch.tensor([o.centre for o in params.objects], dtype=torch.float64)  # (K, 2)
    vel = torch.tensor([o.velocity for o in params.objects], dtype=torch.float64)  # (K, 2)
    s = torch.tensor(params.translation, dtype=torch.float64)  # (N, 2)
    dt = torch.arange(n, dtype=torch.float64) - params.ref
    carried = c + torch.einsum("nij,kj->nki", params.matrices(), p - c) + s[:, None]
    return carried + dt[:, None, None] * vel


def _edge_distance(obj: ObjectLayer, rel: Tensor) -> Tensor:
    """Signed distance (px, < 0 inside) to the edge of ``obj`` at offsets rel (..., 2) from its
    centre: (rho - 1) min(radii), rho the elliptic norm. It is 1-Lipschitz and exact on circles;
    alpha = clamp(1/2 - dist / softness, 0, 1)."""
    cos, sin = math.cos(obj.angle), math.sin(obj.angle)
    along = (cos * rel[..., 0] + sin * rel[..., 1]) / obj.radii[0]
    across = (-sin * rel[..., 0] + cos * rel[..., 1]) / obj.radii[1]
    return (torch.sqrt(along**2 + across**2) - 1) * min(obj.radii)


def motion_flow(params: MotionParams, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Ground-truth displacement of every reference pixel (pure geometry, no scene needed).

    Returns flow (N, 2, H, W) float32 (dy, dx) and valid (N, H, W) bool (module docstring).
    A reference pixel belongs to the top layer whose alpha exceeds 1/2 there; it is valid in
    frame t when it is not within OCCLUSION_GUARD_PX of a soft edge in the reference, no layer
    above its own reaches within that guard of its position in t, and that position is inside
    the frame.
    """
    h, w = size
    n = params.n_frames
    c = _centre(size)
    eye = torch.eye(2, dtype=torch.float64)
    a_minus_i = params.matrices() - eye
    s = torch.tensor(params.translation, dtype=torch.float64)
    flow = _affine_points(a_minus_i, s - a_minus_i @ c, size)  # (N, H, W, 2): (A - I)(u - c) + s
    u = _identity_points(1, torch.zeros(2, dtype=torch.float64), size)[0]  # (H, W, 2)
    owner = torch.zeros(size, dtype=torch.long)  # 0 background, k + 1 object k
    pure = torch.ones(size, dtype=torch.bool)
    q = object_positions(params, size)  # (N, K, 2)
    for k, obj in enumerate(params.objects):
        dist = _edge_distance(obj, u - torch.tensor(obj.centre))
        covers = dist < 0
        reach = OCCLUSION_GUARD_PX + obj.softness / 2  # alpha > 0 within `guard` of this
        pure = torch.where(covers, dist <= -reach, pure & (dist >= reach))
        owner = torch.where(covers, k + 1, owner)
        moved = (q[:, k] - q[params.ref, k]).float()[:, None, None]  # (N, 1, 1, 2)
        flow = torch.where(covers[..., None], moved, flow)
    pos = u + flow  # (N, H, W, 2) position in frame t
    valid = pure.expand(n, h, w).clone()
    valid &= (pos[..., 0] >= 0) & (pos[..., 0] <= h - 1)
    valid &= (pos[..., 1] >= 0) & (pos[..., 1] <= w - 1)
    for k, obj in enumerate(params.objects):
        reach = OCCLUSION_GUARD_PX + obj.softness / 2
        hit = _edge_distance(obj, pos - q[:, k, None, None].float()) < reach  # (N, H, W)
        valid &= ~(hit & (owner <= k))  # occluded by a layer above the pixel's own
    return flow.permute(0, 3, 1, 2).contiguous(), valid


def motion_bbox(params: MotionParams, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer bounds (y0, x0, y1, x1), inclusive, of the scene pixels the background warp reads,
    relative to the reference crop's top-left corner (so y0 <= 0 <= H - 1 <= y1).

    The scene must extend -y0 px above the crop, y1 - H + 1 below (same for x): that is the
    margin the motion needs, bicubic support included.
    """
    h, w = size
    corners = torch.tensor([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], dtype=torch.float64)
    m, o = _camera_inverse(params, size)
    u = (torch.einsum("nij,kj->nki", m, corners) + o[:, None]).reshape(-1, 2)
    lo = torch.floor(u.amin(0) - 1e-9).long() - BICUBIC_SUPPORT_PX
    hi = torch.ceil(u.amax(0) + 1e-9).long() + BICUBIC_SUPPORT_PX
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def required_scene_size(params: MotionParams, size: tuple[int, int]) -> tuple[int, int]:
    """Smallest (Hs, Ws) of a scene that holds every frame of ``params`` at ``size``."""
    y0, x0, y1, x1 = motion_bbox(params, size)
    return y1 - y0 + 1, x1 - x0 + 1


def _place(
    params: MotionParams,
    size: tuple[int, int],
    scene_size: tuple[int, int],
    origin: tuple[int, int] | None,
) -> tuple[int, int]:
    """Top-left of the reference crop in the scene: centred on the motion's bbox by default."""
    y0, x0, y1, x1 = motion_bbox(params, size)
    hs, ws = scene_size
    at = "" if origin is None else f" at origin {tuple(origin)}"
    if origin is None:
        origin = ((hs - 1 - y1 - y0) // 2, (ws - 1 - x1 - x0) // 2)
    oy, ox = origin
    if oy + y0 < 0 or ox + x0 < 0 or oy + y1 > hs - 1 or ox + x1 > ws - 1:
        need = required_scene_size(params, size)
        raise DataError(
            f"scene {hs}x{ws} too small for a {size[0]}x{size[1]} crop{at} with this motion: "
            f"needs at least {need[0]}x{need[1]} px (margins {-y0}/{y1 - size[0] + 1} rows, "
            f"{-x0}/{x1 - size[1] + 1} columns)"
        )
    return oy, ox


def _sample(image: Tensor, points: Tensor, mode: str) -> Tensor:
    """Sample image (B, C, Hs, Ws) at pixel positions points (B, ..., 2) (y, x) -> (B, C, ...).

    align_corners=True: pixel centres at integer coordinates; borders replicate.
    """
    hs, ws = image.shape[-2:]
    b = points.shape[0]
    flat = points.reshape(b, -1, 1, 2)
    grid = torch.stack(
        [2 * flat[..., 1] / max(ws - 1, 1) - 1, 2 * flat[..., 0] / max(hs - 1, 1) - 1], -1
    ).to(image.dtype)
    out = F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)
    return out.reshape(b, image.shape[1], *points.shape[1:-1])


def render_motion(
    scene: Tensor,
    params: MotionParams,
    out_size: tuple[int, int],
    *,
    origin: tuple[int, int] | None = None,
    texture: Tensor | None = None,
    mode: str = "bicubic",
) -> Tensor:
    """The frames of ``apply_motion`` without the ground truth: (N, C, H, W) (same arguments)."""
    n = params.n_frames
    if scene.dim() == 4 and scene.shape[0] != n:
        raise ConfigError(f"got {scene.shape[0]} scene frames for {n} motion frames")
    scenes = scene.unsqueeze(0) if scene.dim() == 3 else scene
    oy, ox = _place(params, out_size, tuple(scenes.shape[-2:]), origin)
    dev = scene.device
    m, o = _camera_inverse(params, out_size)
    o = o + torch.tensor([oy, ox], dtype=torch.float64)
    u = _affine_points(m, o, out_size).to(dev)  # (N, H, W, 2) scene position of every pixel
    if scenes.shape[0] == 1:  # one scene: sample every frame in one call
        frames = _sample(scenes, u.unsqueeze(0), mode)[0].transpose(0, 1).contiguous()
    else:
        frames = _sample(scenes, u, mode)
    h, w = out_size
    for t in range(n):  # untransformed frames (the reference): exact copies, no float rounding
        identity = params.rotation[t] == 0.0 and params.zoom[t] == 1.0
        if identity and params.translation[t] == (0.0, 0.0):
            frames[t] = scenes[t % len(scenes), :, oy : oy + h, ox : ox + w]
    lo, hi = scenes.amin(), scenes.amax()
    if params.objects:
        tex = scenes[min(params.ref, len(scenes) - 1)] if texture is None else texture
        lo, hi = torch.minimum(lo, tex.amin()), torch.maximum(hi, tex.amax())
        _draw_objects(frames, tex, params, mode)
    return frames.clamp(lo, hi) if mode == "bicubic" else frames


def _draw_objects(frames: Tensor, texture: Tensor, params: MotionParams, mode: str) -> None:
    """Composite every object layer over frames (N, C, H, W) in place, window by window."""
    h, w = frames.shape[-2:]
    ht, wt = texture.shape[-2:]
    q = object_positions(params, (h, w)).tolist()  # (N, K, 2)
    for k, obj in enumerate(params.objects):
        r = math.ceil(obj.extent) + BICUBIC_SUPPORT_PX
        if ht < 2 * r + 1 or wt < 2 * r + 1:
            raise DataError(f"texture {ht}x{wt} too small for an object of radius {r} px")
        tex_centre = (r + obj.texture[0] * (ht - 1 - 2 * r), r + obj.texture[1] * (wt - 1 - 2 * r))
        for t in range(params.n_frames):
            qy, qx = q[t][k]
            # window holding every pixel with alpha > 0
            y0, y1 = max(math.floor(qy - obj.extent), 0), min(math.ceil(qy + obj.extent) + 1, h)
            x0, x1 = max(math.floor(qx - obj.extent), 0), min(math.ceil(qx + obj.extent) + 1, w)
            if y0 >= y1 or x0 >= x1:
                continue
            offset = torch.tensor([[y0 - qy, x0 - qx]], dtype=torch.float64)
            rel = _identity_points(1, offset, (y1 - y0, x1 - x0)).to(frames.device)  # v - q_k(t)
            alpha = (0.5 - _edge_distance(obj, rel[0]) / obj.softness).clamp(0, 1).to(frames.dtype)
            pts = rel + torch.tensor(tex_centre, dtype=torch.float32, device=frames.device)
            content = _sample(texture.unsqueeze(0), pts, mode)[0]  # (C, h', w')
            window = frames[t, :, y0:y1, x0:x1]
            window += alpha * (content - window)


def apply_motion(
    scene: Tensor,
    params: MotionParams,
    out_size: tuple[int, int],
    *,
    origin: tuple[int, int] | None = None,
    texture: Tensor | None = None,
    mode: str = "bicubic",
) -> tuple[Tensor, Tensor, Tensor]:
    """Render the N frames of ``params`` from a larger scene; return them with the true motion.

    scene: (C, Hs, Ws) one image (a still), or (N, C, Hs, Ws) one image per frame (a clip, whose
    own motion is then NOT in the returned flow). Apply it to clean linear RGB.
    origin: (y, x) of the reference crop's top-left in the scene (default: the motion's bbox
    centred in the scene); DataError if the motion reads outside the scene (``motion_bbox``).
    texture: (C, Ht, Wt) the objects are cut from (default: the reference scene).
    mode: grid_sample mode, "bicubic" (default; overshoot clamped to the scene's range) or
    "bilinear".
    Returns frames (N, C, H, W), flow (N, 2, H, W) float32, valid (N, H, W) bool.
    """
    frames = render_motion(scene, params, out_size, origin=origin, texture=texture, mode=mode)
    flow, valid = motion_flow(params, out_size)
    return frames, flow.to(frames.device), valid.to(frames.device)

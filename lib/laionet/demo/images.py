"""Class-conditional image generator: a class prototype plus nuisance, rendered with numpy.

An image is drawn from a *prototype* (shape family, aspect, two colours, a texture, a habitat
background colour: what makes a class look like itself) and a *nuisance* vector ``z`` of
``N_NUISANCE`` standard-scaled factors (pose, scale, position, colour shift, background clutter,
occlusion). ``z = 0`` is the textbook picture of the class; the *typicality* of an image is

    typicality = exp(-||z||^2 / (2 * N_NUISANCE))      in (0, 1], 1 = perfectly typical.

Rendering is vectorised over a batch (all images of a chunk are computed as [B, H, W] arrays).
"""

import numpy as np
import pandas as pd

IMAGE_SIZE = 64
N_FAMILIES = 7
N_TEXTURES = 4
NUISANCE = ("pose", "scale", "shift_x", "shift_y", "hue_r", "hue_g", "hue_b", "clutter",
            "occlusion")
N_NUISANCE = len(NUISANCE)

# Named colours the captions may use for an image's dominant colour (the caption's only glimpse
# of the pixels) and habitat backgrounds with the words a caption may use for them.
COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white",
                "grey")
COLOUR_RGB = np.array([[.85, .15, .12], [.95, .55, .10], [.95, .85, .15], [.20, .65, .20],
                       [.15, .30, .85], [.55, .20, .65], [.50, .32, .15], [.08, .08, .08],
                       [.95, .95, .95], [.55, .55, .55]], dtype=np.float32)
HABITATS = (("on grass", (.35, .60, .25)), ("in the snow", (.90, .92, .95)),
            ("by the sea", (.30, .55, .80)), ("indoors", (.75, .65, .55)),
            ("at night", (.10, .10, .18)), ("in the desert", (.85, .72, .45)))
HABITAT_RGB = np.array([c for _, c in HABITATS], dtype=np.float32)


def make_prototypes(n: int, rng: np.random.Generator, family_offset: int = 0) -> pd.DataFrame:
    """``n`` distinct prototypes: family, aspect, colour_a/b (palette ids), texture, freq, habitat.
    Families and textures cycle so that neighbouring prototypes differ in shape *and* texture;
    colours are drawn without replacement within each run of ten."""
    idx = np.arange(n) + family_offset
    col_a = np.concatenate([rng.permutation(len(COLOUR_NAMES)) for _ in range(n // 10 + 1)])[:n]
    col_b = (col_a + 1 + rng.integers(0, len(COLOUR_NAMES) - 1, n)) % len(COLOUR_NAMES)
    return pd.DataFrame({
        "family": (idx % N_FAMILIES).astype(np.int8),
        "aspect": rng.uniform(0.6, 1.0, n).astype(np.float32),
        "colour_a": col_a.astype(np.int8),
        "colour_b": col_b.astype(np.int8),
        "texture": ((idx // N_FAMILIES + idx) % N_TEXTURES).astype(np.int8),
        "tex_freq": rng.uniform(6.0, 14.0, n).astype(np.float32),
        "tex_angle": rng.uniform(0, np.pi, n).astype(np.float32),
        "habitat": rng.integers(0, len(HABITATS), n).astype(np.int8),
    })


def typicality(z: np.ndarray) -> np.ndarray:
    """exp(-||z||^2 / (2 d)): 1 for the prototype itself, falling with the size of the nuisance."""
    return np.exp(-(z.astype(np.float64) ** 2).sum(1) / (2 * N_NUISANCE)).astype(np.float32)


def _family_distance(k: int, u: np.ndarray, v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Signed distance-like value (<= 0 inside) of shape family ``k`` at coordinates (u, v)."""
    r = 0.55
    if k == 0:                                                        # ellipse
        return np.sqrt(u ** 2 + (v / a) ** 2) - r
    if k == 1:                                                        # rectangle
        return np.maximum(np.abs(u), np.abs(v) / a) - r * 0.85
    if k == 2:                                                        # triangle
        return np.maximum.reduce([-v - r * .5, (1.732 * u + v) / 2 - r * .5,
                                  (-1.732 * u + v) / 2 - r * .5])
    if k == 3:                                                        # ring
        return np.abs(np.sqrt(u ** 2 + v ** 2) - r * 0.7) - r * 0.22
    if k == 4:                                                        # cross
        return np.minimum(np.maximum(np.abs(u) - r * .25, np.abs(v) - r),
                          np.maximum(np.abs(u) - r, np.abs(v) - r * .25))
    if k == 5:                                                        # diamond
        return np.abs(u) + np.abs(v) / a - r
    return np.maximum(np.sqrt(u ** 2 + v ** 2) - r,                   # crescent
                      r * .75 - np.sqrt((u - r * .45) ** 2 + v ** 2))


def _texture(tex: np.ndarray, u, v, freq, angle) -> np.ndarray:
    """Texture weight in [0, 1]: 0 plain, 1 stripes, 2 checker, 3 dots."""
    f, t = freq[:, None, None], angle[:, None, None]
    s = u * np.cos(t) + v * np.sin(t)
    out = np.where((tex == 1)[:, None, None], 0.5 + 0.5 * np.sin(f * s), np.zeros_like(u))
    out = np.where((tex == 2)[:, None, None], (np.sin(f * u) * np.sin(f * v) > 0), out)
    out = np.where((tex == 3)[:, None, None], (np.sin(f * u) * np.sin(f * v) > 0.55), out)
    return out.astype(np.float32)


def render(proto: pd.DataFrame, z: np.ndarray, rng: np.random.Generator,
           size: int = IMAGE_SIZE, chunk: int = 512) -> np.ndarray:
    """Render images [n, size, size, 3] uint8 from per-image prototype rows (``make_prototypes``'
    fields) and nuisance ``z``. ``rng`` draws the incidental detail (clutter waves, occluder
    placement, pixel noise), so the same seed gives the same pixels."""
    n = len(proto)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    g = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    # incidental randomness, drawn once for all images so chunking does not change the stream
    waves = rng.uniform(0, 1, (n, 4, 4)).astype(np.float32)   # freq, angle, phase, colour mix
    occ = rng.uniform(-0.6, 0.6, (n, 2)).astype(np.float32)
    occ_col = rng.uniform(0.2, 0.8, (n, 3)).astype(np.float32)
    noise_seed = int(rng.integers(0, 2 ** 31))
    cols = {k: proto[k].to_numpy() for k in proto.columns}
    for lo in range(0, n, chunk):
        s = slice(lo, min(n, lo + chunk))
        zz = z[s]
        theta = zz[:, 0] * 0.7                                 # pose, scale, position
        sc = np.exp(zz[:, 1] * 0.25)[:, None, None]
        c, si = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        x0 = xx[None] - (zz[:, 2] * 0.22)[:, None, None]
        y0 = yy[None] - (zz[:, 3] * 0.22)[:, None, None]
        u, v = (c * x0 + si * y0) / sc, (-si * x0 + c * y0) / sc
        fam, d = cols["family"][s], np.empty_like(u)  # the shape: one pass per family present
        for k in np.unique(fam):
            d[fam == k] = _family_distance(int(k), u[fam == k], v[fam == k],
                                           cols["aspect"][s][fam == k][:, None, None])
        mask = np.clip(0.5 - d * 25.0, 0.0, 1.0)  # soft inside-ness, ~2-pixel anti-aliased edge
        tex = _texture(cols["texture"][s], u, v, cols["tex_freq"][s], cols["tex_angle"][s])
        shift = zz[:, 4:7, None, None] * 0.12
        ca, cb = (COLOUR_RGB[cols[k][s]][:, :, None, None] + shift for k in ("colour_a", "colour_b"))
        fg = ca * (1 - tex[:, None]) + cb * tex[:, None]                    # [b, 3, H, W]
        # background: habitat colour plus clutter (random low-frequency waves, amplitude |z_7|)
        w = waves[s]
        freq = 2 + 10 * w[:, :, 0, None, None]
        ang = np.pi * w[:, :, 1, None, None]
        ph = 2 * np.pi * w[:, :, 2, None, None]
        pat = np.sin(freq * (xx[None, None] * np.cos(ang) + yy[None, None] * np.sin(ang)) + ph)
        amp = (0.08 + 0.35 * np.abs(zz[:, 7]))[:, None, None, None]
        mix = (w[:, :, 3] - 0.5)[:, :, None] * np.array([1, -1, 1], np.float32)  # [b, 4, 3]
        clutter = np.einsum("bkhw,bkc->bchw", pat, mix, optimize=True)       # [b, 3, H, W]
        bg = HABITAT_RGB[cols["habitat"][s]][:, :, None, None] + amp * clutter
        img = bg * (1 - mask[:, None]) + fg * mask[:, None]
        # occlusion: an opaque box whose half-size grows with |z_8| beyond 0.5
        half = (np.maximum(np.abs(zz[:, 8]) - 0.5, 0) * 0.35)[:, None, None]
        box = (np.abs(xx[None] - occ[s, 0, None, None]) < half) & \
              (np.abs(yy[None] - occ[s, 1, None, None]) < half)
        img = np.where(box[:, None], occ_col[s][:, :, None, None], img)
        img += 0.02 * np.random.default_rng([noise_seed, lo]).standard_normal(img.shape, np.float32)
        out[s] = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return out


def dominant_colour(proto: pd.DataFrame, z: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of each image's main colour after its colour shift (for captions)."""
    rgb = COLOUR_RGB[proto["colour_a"].to_numpy()] + z[:, 4:7] * 0.12
    return ((rgb[:, None, :] - COLOUR_RGB[None]) ** 2).sum(-1).argmin(1)

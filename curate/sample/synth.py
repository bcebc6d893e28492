"""Synthetic image-text corpus with labelled noise: the ground truth every filter is scored on.

Clean rows are PIL drawings (coloured shapes at named positions on a textured background) whose
caption truly describes them. Noisy rows are injected in the fixed proportions of
``NOISE_FRACTIONS``; the kinds mirror what real filters remove: LAION-5B (Schuhmann et al. 2022,
§3: alt-text length, image size, duplicates, CLIP mismatch, language), DataComp basic filtering
(Gadre et al. 2023: English only, > 2 words and > 5 chars, shorter side >= 200 px, aspect <= 3)
CC3M (Sharma et al. 2018: boilerplate alt-text, cropped or dropped; broken or missing images)
and C4-style word blocklists (LDNOOBW, as C4 filtered its pages; Raffel et al. 2020, §2.2).

Every caption's language is labelled (``caption_lang``: ``en``, ``de``, ``fr``, ``es``, ``it``,
``pt``; null for boilerplate and one-word fillers, which have none), so language ID is scored on
it. Blocklisted captions carry one word of ``BLOCKLIST_WORDS``, each an entry of LDNOOBW's
English list; the corpus directory gets that list as ``blocklists/en`` for ``caption_blocklist``.

``write_synth_corpus(out_dir, n, seed)`` writes ``out_dir/images/*.jpg`` and
``out_dir/samples.parquet`` with columns ``url`` (relative to ``out_dir``), ``caption``,
``noise`` (label), ``true_caption``, ``dup_of``, ``sample_id`` and ``caption_lang``. Output is byte-identical for
the same ``(n, seed)``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

SYNTH_VERSION = 2
"""Bumped whenever the output for a given ``(n, seed)`` changes; invalidates reused corpora."""

NOISE_FRACTIONS: dict[str, float] = {
    "mismatched_caption": 0.06,
    "boilerplate_caption": 0.04,
    "boilerplate_suffix": 0.02,
    "blocklisted_caption": 0.02,
    "short_caption": 0.03,
    "non_english_caption": 0.04,
    "tiny_image": 0.03,
    "extreme_aspect": 0.03,
    "exact_duplicate": 0.03,
    "near_duplicate": 0.03,
    "broken_image": 0.03,
    "missing_image": 0.03,
}
"""Fraction of rows per noise kind (39% in all); the rest is ``clean``. See ``noise_counts``.
``boilerplate_suffix`` rows are a true caption followed by boilerplate ("... - stock photo"): CC3M
crops it (the cropped text equals ``true_caption``) rather than dropping the row."""

NOISE_KINDS: tuple[str, ...] = ("clean", *NOISE_FRACTIONS)

# Vocabulary of the drawings and captions.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 155, 55),
    "blue": (35, 75, 215),
    "yellow": (245, 215, 30),
    "orange": (245, 135, 20),
    "purple": (125, 40, 165),
    "pink": (245, 125, 185),
    "brown": (125, 75, 30),
    "black": (20, 20, 20),
}
SHAPES: dict[str, str] = {  # singular -> plural
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "hexagon": "hexagons",
    "diamond": "diamonds",
    "pentagon": "pentagons",
}
POSITIONS: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
TEXTURES: dict[str, str] = {"plain": "plain", "stripes": "striped", "dots": "dotted", "noise": "noisy"}

_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
_EN_TEMPLATES = (
    "{g} on a {bg} background",
    "A picture of {g} on a {bg} background",
    "{g}, drawn on a {bg} background",
    "An illustration showing {g} against a {bg} background",
)
# Regions (x0, y0, x1, y1) as fractions of the canvas; two groups use left+right or top+bottom.
_REGIONS = {
    "left": (0.04, 0.10, 0.46, 0.90),
    "right": (0.54, 0.10, 0.96, 0.90),
    "top": (0.10, 0.04, 0.90, 0.46),
    "bottom": (0.10, 0.54, 0.90, 0.96),
    "center": (0.25, 0.25, 0.75, 0.75),
}

_BOILERPLATE = (
    "image", "photo", "picture", "untitled", "Untitled-{k}", "IMG_{d4}.JPG", "DSC_{d4}.jpg", "DSCN{d4}.JPG",
    "click here", "click to enlarge", "view larger image", "image not available", "no description available",
    "placeholder", "thumbnail", "default image", "stock photo", "Photo {k} of {m}", "Image {k}", "screenshot",
    "untitled design", "alt text", "banner", "logo", "product image", "spacer.gif", "image{d4}.png",
)
#: Boilerplate a caption may end with (CC3M crops it): the first word of each is on its own in _BOILERPLATE.
_BOILERPLATE_SUFFIXES = (" - stock photo", " | click to enlarge", " - stock image", " (view larger image)",
                         " - royalty free stock photo", " | embedded image permalink")
#: Words of LDNOOBW's English list (github.com/LDNOOBW, the list C4 used) that alt-text really carries.
BLOCKLIST_WORDS = ("nsfw", "nude", "xxx", "topless", "erotic")
_SHORT_FILLERS = ("nice", "wow", "cute", "lol", ":)", "art", "ok", "yes")

# Non-English captions: shape -> (gender, singular, plural); colour -> (m sg, f sg, m pl, f pl).
_ROMANCE = {
    "fr": {
        "shapes": {
            "circle": ("m", "cercle", "cercles"), "square": ("m", "carré", "carrés"),
            "triangle": ("m", "triangle", "triangles"), "star": ("f", "étoile", "étoiles"),
            "hexagon": ("m", "hexagone", "hexagones"), "diamond": ("m", "losange", "losanges"),
            "pentagon": ("m", "pentagone", "pentagones"),
        },
        "colours": {
            "red": ("rouge", "rouge", "rouges", "rouges"), "green": ("vert", "verte", "verts", "vertes"),
            "blue": ("bleu", "bleue", "bleus", "bleues"), "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
            "orange": ("orange",) * 4, "purple": ("violet", "violette", "violets", "violettes"),
            "pink": ("rose", "rose", "roses", "roses"), "brown": ("marron",) * 4,
            "black": ("noir", "noire", "noirs", "noires"),
        },
        "numbers": {1: ("un", "une"), 2: ("deux",) * 2, 3: ("trois",) * 2, 4: ("quatre",) * 2},
        "positions": {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas",
                      "center": "au centre"},
        "textures": {"plain": "uni", "stripes": "rayé", "dots": "à pois", "noise": "bruité"},
        "and": "et",
        "templates": ("{g} sur un fond {bg}.", "Une image montrant {g} sur un fond {bg}."),
    },
    "es": {
        "shapes": {
            "circle": ("m", "círculo", "círculos"), "square": ("m", "cuadrado", "cuadrados"),
            "triangle": ("m", "triángulo", "triángulos"), "star": ("f", "estrella", "estrellas"),
            "hexagon": ("m", "hexágono", "hexágonos"), "diamond": ("m", "rombo", "rombos"),
            "pentagon": ("m", "pentágono", "pentágonos"),
        },
        "colours": {
            "red": ("rojo", "roja", "rojos", "rojas"), "green": ("verde", "verde", "verdes", "verdes"),
            "blue": ("azul", "azul", "azules", "azules"),
            "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"), "orange": ("naranja",) * 4,
            "purple": ("morado", "morada", "morados", "moradas"), "pink": ("rosa",) * 4,
            "brown": ("marrón", "marrón", "marrones", "marrones"), "black": ("negro", "negra", "negros", "negras"),
        },
        "numbers": {1: ("un", "una"), 2: ("dos",) * 2, 3: ("tres",) * 2, 4: ("cuatro",) * 2},
        "positions": {"left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo",
                      "center": "en el centro"},
        "textures": {"plain": "liso", "stripes": "a rayas", "dots": "de lunares", "noise": "con ruido"},
        "and": "y",
        "templates": ("{g} sobre un fondo {bg}.", "Una imagen con {g} sobre un fondo {bg}."),
    },
    "it": {
        "shapes": {
            "circle": ("m", "cerchio", "cerchi"), "square": ("m", "quadrato", "quadrati"),
            "triangle": ("m", "triangolo", "triangoli"), "star": ("f", "stella", "stelle"),
            "hexagon": ("m", "esagono", "esagoni"), "diamond": ("m", "rombo", "rombi"),
            "pentagon": ("m", "pentagono", "pentagoni"),
        },
        "colours": {
            "red": ("rosso", "rossa", "rossi", "rosse"), "green": ("verde", "verde", "verdi", "verdi"),
            "blue": ("blu",) * 4, "yellow": ("giallo", "gialla", "gialli", "gialle"),
            "orange": ("arancione", "arancione", "arancioni", "arancioni"), "purple": ("viola",) * 4,
            "pink": ("rosa",) * 4, "brown": ("marrone", "marrone", "marroni", "marroni"),
            "black": ("nero", "nera", "neri", "nere"),
        },
        "numbers": {1: ("un", "una"), 2: ("due",) * 2, 3: ("tre",) * 2, 4: ("quattro",) * 2},
        "positions": {"left": "a sinistra", "right": "a destra", "top": "in alto", "bottom": "in basso",
                      "center": "al centro"},
        "textures": {"plain": "uniforme", "stripes": "a righe", "dots": "a pois", "noise": "granuloso"},
        "and": "e",
        "templates": ("{g} su uno sfondo {bg}.", "Un'immagine con {g} su uno sfondo {bg}."),
    },
    "pt": {
        "shapes": {
            "circle": ("m", "círculo", "círculos"), "square": ("m", "quadrado", "quadrados"),
            "triangle": ("m", "triângulo", "triângulos"), "star": ("f", "estrela", "estrelas"),
            "hexagon": ("m", "hexágono", "hexágonos"), "diamond": ("m", "losango", "losangos"),
            "pentagon": ("m", "pentágono", "pentágonos"),
        },
        "colours": {
            "red": ("vermelho", "vermelha", "vermelhos", "vermelhas"), "green": ("verde", "verde", "verdes", "verdes"),
            "blue": ("azul", "azul", "azuis", "azuis"), "yellow": ("amarelo", "amarela", "amarelos", "amarelas"),
            "orange": ("laranja",) * 4, "purple": ("roxo", "roxa", "roxos", "roxas"), "pink": ("rosa",) * 4,
            "brown": ("marrom", "marrom", "marrons", "marrons"), "black": ("preto", "preta", "pretos", "pretas"),
        },
        "numbers": {1: ("um", "uma"), 2: ("dois", "duas"), 3: ("três",) * 2, 4: ("quatro",) * 2},
        "positions": {"left": "à esquerda", "right": "à direita", "top": "em cima", "bottom": "embaixo",
                      "center": "no centro"},
        "textures": {"plain": "liso", "stripes": "listrado", "dots": "de bolinhas", "noise": "com ruído"},
        "and": "e",
        "templates": ("{g} sobre um fundo {bg}.", "Uma imagem com {g} sobre um fundo {bg}."),
    },
}
_DE_SHAPES = {
    "circle": ("m", "Kreis", "Kreise"), "square": ("n", "Quadrat", "Quadrate"),
    "triangle": ("n", "Dreieck", "Dreiecke"), "star": ("m", "Stern", "Sterne"),
    "hexagon": ("n", "Sechseck", "Sechsecke"), "diamond": ("f", "Raute", "Rauten"),
    "pentagon": ("n", "Fünfeck", "Fünfecke"),
}
_DE_COLOURS = {
    "red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "orange": "orangefarben",
    "purple": "violett", "pink": "rosafarben", "brown": "braun", "black": "schwarz",
}
_DE_POSITIONS = {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten", "center": "in der Mitte"}
_DE_TEXTURES = {"plain": "einfarbigem", "stripes": "gestreiftem", "dots": "gepunktetem", "noise": "verrauschtem"}
_DE_TEMPLATES = ("{g} auf {bg} Hintergrund.", "Illustration: {g} auf {bg} Hintergrund.")
_LANGS = ("de", "fr", "es", "it", "pt")

_JPEG_QUALITY = 90
_BANK_SIDE = 1288  # covers the largest canvas (extreme aspect: 256 x 1280)
_STATE_FILE = "synth.json"
BLOCKLIST_DIR = "blocklists"
_PARQUET = "samples.parquet"


@dataclass(frozen=True)
class _Group:
    count: int
    colour: str
    shape: str
    position: str


@dataclass(frozen=True)
class _Scene:
    groups: tuple[_Group, ...]
    texture: str


def noise_counts(n: int) -> dict[str, int]:
    """Rows per label for a corpus of ``n`` rows: ``round(n * fraction)`` per noise kind, the rest clean."""
    counts = {kind: round(n * frac) for kind, frac in NOISE_FRACTIONS.items()}
    return {"clean": n - sum(counts.values()), **counts}


def write_synth_corpus(out_dir: str | Path, n: int, seed: int = 0) -> Path:
    """Writes out_dir/images/*.jpg and out_dir/samples.parquet; returns the parquet path.

    Deterministic for ``(n, seed)``; a corpus already written there with the same ``(n, seed)``
    and ``SYNTH_VERSION`` (recorded last, in ``out_dir/synth.json``) is reused as is.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir)
    parquet_path = out / _PARQUET
    state_path = out / _STATE_FILE
    state = {"n": n, "seed": seed, "version": SYNTH_VERSION, "noise_counts": noise_counts(n)}
    if parquet_path.is_file() and state_path.is_file():
        try:
            previous = json.loads(state_path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous == state:
            return parquet_path
    state_path.unlink(missing_ok=True)  # the marker goes first, so a crash below never looks complete
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)

    table, written = _build(images, n, seed)
    _sweep_stale(images, written)
    write_corpus_lists(out)
    tmp = parquet_path.with_name(parquet_path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=3, use_dictionary=["noise"])
    os.replace(tmp, parquet_path)
    state_path.write_text(json.dumps(state, sort_keys=True, indent=2) + "\n")
    return parquet_path


def write_corpus_lists(out_dir: str | Path) -> None:
    """The files the corpus carries for stages to read (``blocklists/en``), without the corpus:
    cheap, so a pipeline's stages can be checked before the corpus is drawn."""
    lists = Path(out_dir) / BLOCKLIST_DIR
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "en").write_text("\n".join(BLOCKLIST_WORDS) + "\n")


# ---------------------------------------------------------------- planning


def _plan_labels(n: int, rng: np.random.Generator) -> list[str]:
    labels = [kind for kind, count in noise_counts(n).items() for _ in range(count)]
    order = rng.permutation(n)
    labels = [labels[k] for k in order]
    if labels[0] != "clean":  # every duplicate then has an earlier clean original
        first = labels.index("clean")
        labels[0], labels[first] = labels[first], labels[0]
    return labels


def _random_scene(rng: np.random.Generator) -> _Scene:
    total = int(rng.integers(1, 5))
    n_groups = 1 if total == 1 else int(rng.integers(1, 3))
    colours = rng.choice(len(COLOURS), size=n_groups, replace=False)
    shapes = rng.choice(len(SHAPES), size=n_groups, replace=False)
    if n_groups == 1:
        counts = [total]
        positions = [list(POSITIONS)[int(rng.integers(len(POSITIONS)))]]
    else:
        first = int(rng.integers(1, total))
        counts = [first, total - first]
        positions = [["left", "right"], ["top", "bottom"]][int(rng.integers(2))]
        if rng.random() < 0.5:
            positions = positions[::-1]
    groups = tuple(
        _Group(counts[k], list(COLOURS)[int(colours[k])], list(SHAPES)[int(shapes[k])], positions[k])
        for k in range(n_groups)
    )
    return _Scene(groups, list(TEXTURES)[int(rng.integers(len(TEXTURES)))])


def _english(scene: _Scene, rng: np.random.Generator) -> str:
    parts = []
    for g in scene.groups:
        if g.count == 1:
            article = "an" if g.colour[0] in "aeiou" else "a"
            parts.append(f"{article} {g.colour} {g.shape} {POSITIONS[g.position]}")
        else:
            parts.append(f"{_COUNT_WORDS[g.count]} {g.colour} {SHAPES[g.shape]} {POSITIONS[g.position]}")
    template = _EN_TEMPLATES[int(rng.integers(len(_EN_TEMPLATES)))]
    return _capitalise(template.format(g=" and ".join(parts), bg=TEXTURES[scene.texture]))


def _foreign(scene: _Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A caption of ``scene`` in another language, and that language's ISO 639-1 code."""
    lang = _LANGS[int(rng.integers(len(_LANGS)))]
    parts = []
    if lang == "de":
        for g in scene.groups:
            gender, singular, plural = _DE_SHAPES[g.shape]
            stem = _DE_COLOURS[g.colour]
            if g.count == 1:
                head = {"m": f"ein {stem}er", "n": f"ein {stem}es", "f": f"eine {stem}e"}[gender]
                parts.append(f"{head} {singular} {_DE_POSITIONS[g.position]}")
            else:
                word = {2: "zwei", 3: "drei", 4: "vier"}[g.count]
                parts.append(f"{word} {stem}e {plural} {_DE_POSITIONS[g.position]}")
        template = _DE_TEMPLATES[int(rng.integers(len(_DE_TEMPLATES)))]
        return _capitalise(template.format(g=" und ".join(parts), bg=_DE_TEXTURES[scene.texture])), lang
    vocab = _ROMANCE[lang]
    for g in scene.groups:
        gender, singular, plural = vocab["shapes"][g.shape]
        f = gender == "f"
        number = vocab["numbers"][g.count][f]
        noun = singular if g.count == 1 else plural
        colour = vocab["colours"][g.colour][(2 if g.count > 1 else 0) + f]
        parts.append(f"{number} {noun} {colour} {vocab['positions'][g.position]}")
    template = vocab["templates"][int(rng.integers(len(vocab["templates"])))]
    return _capitalise(template.format(g=f" {vocab['and']} ".join(parts), bg=vocab["textures"][scene.texture])), lang


def _boilerplate(rng: np.random.Generator) -> str:
    text = _BOILERPLATE[int(rng.integers(len(_BOILERPLATE)))]
    k = int(rng.integers(1, 13))
    return text.format(k=k, m=k + int(rng.integers(0, 12)), d4=f"{int(rng.integers(0, 10000)):04d}")


def _with_boilerplate(caption: str, rng: np.random.Generator) -> str:
    return caption + _BOILERPLATE_SUFFIXES[int(rng.integers(len(_BOILERPLATE_SUFFIXES)))]


def _blocklisted(caption: str, rng: np.random.Generator) -> str:
    """``caption`` with one blocklisted word, as a tag after it or a label before it."""
    word = BLOCKLIST_WORDS[int(rng.integers(len(BLOCKLIST_WORDS)))]
    if rng.random() < 0.5:
        return f"{caption} ({word})"
    return f"{word.upper() if rng.random() < 0.5 else word.capitalize()}: {caption[:1].lower()}{caption[1:]}"


def _short(scene: _Scene, rng: np.random.Generator) -> str:
    g = scene.groups[0]
    options = (
        g.colour,
        g.shape,
        SHAPES[g.shape],
        f"{g.colour} {g.shape}",
        f"{g.colour} {SHAPES[g.shape]}",
        _SHORT_FILLERS[int(rng.integers(len(_SHORT_FILLERS)))],
    )
    return options[int(rng.integers(len(options)))]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _scene_key(scene: _Scene) -> tuple:
    return (scene.texture, tuple((g.count, g.colour, g.shape, g.position) for g in scene.groups))


# ---------------------------------------------------------------- drawing


def _canvas_size(label: str, rng: np.random.Generator) -> tuple[int, int]:
    if label == "tiny_image":
        short = int(rng.integers(64, 151))
        long = int(short * rng.uniform(1.0, 1.5))
    elif label == "extreme_aspect":
        short = int(rng.integers(200, 257))
        long = int(math.ceil(short * rng.uniform(3.2, 5.0)))
    else:
        return int(rng.integers(256, 513)), int(rng.integers(256, 513))
    return (long, short) if rng.random() < 0.75 else (short, long)


def _draw(scene: _Scene, size: tuple[int, int], bank: np.ndarray, rng: np.random.Generator) -> Image.Image:
    w, h = size
    base = (rng.uniform(150, 205) + rng.uniform(-12, 12, size=3)).astype(np.float32)
    ys = np.arange(h, dtype=np.int32)[:, None]
    xs = np.arange(w, dtype=np.int32)[None, :]
    shade = np.ones((h, 1), dtype=np.float32)  # per-pixel brightness factor, broadcast to (h, w)
    grain = float(rng.uniform(3.0, 5.0))
    if scene.texture == "plain":  # a faint vertical gradient
        shade = 1 + np.linspace(-1, 1, h, dtype=np.float32)[:, None] * np.float32(rng.uniform(0.02, 0.06))
    elif scene.texture == "stripes":
        period = int(rng.integers(14, 40))
        direction = int(rng.integers(3))  # horizontal, vertical, diagonal
        coord = ys if direction == 0 else xs if direction == 1 else xs + ys
        shade = np.where(coord % period < period // 2, np.float32(rng.uniform(0.65, 0.8)), np.float32(1))
    elif scene.texture == "dots":
        step = int(rng.integers(16, 33))
        radius = float(rng.uniform(2.5, step * 0.28))
        dx = ((xs + int(rng.integers(step))) % step - step / 2) ** 2
        dy = ((ys + int(rng.integers(step))) % step - step / 2) ** 2
        shade = np.where(dx + dy <= radius * radius, np.float32(rng.uniform(0.55, 0.75)), np.float32(1))
    else:  # noise
        grain = float(rng.uniform(22.0, 35.0))
    shade = np.broadcast_to(shade, (h, w))
    image = Image.fromarray((shade[:, :, None] * base).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for group in scene.groups:
        _draw_group(draw, group, w, h, rng)
    oy = int(rng.integers(0, _BANK_SIDE - h + 1))
    ox = int(rng.integers(0, _BANK_SIDE - w + 1))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += bank[oy : oy + h, ox : ox + w] * np.float32(grain)
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8))


def _draw_group(draw: ImageDraw.ImageDraw, group: _Group, w: int, h: int, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = _REGIONS[group.position]
    x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
    k = group.count
    if group.position in ("left", "right"):
        cols, rows = 1, k
    elif group.position in ("top", "bottom"):
        cols, rows = k, 1
    else:
        cols, rows = (k, 1) if k <= 2 else (2, 2)
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    rgb = np.array(COLOURS[group.colour], dtype=np.float64)
    for idx in range(k):
        r, c = divmod(idx, cols)
        radius = 0.42 * min(cw, ch) * float(rng.uniform(0.8, 1.0))
        slack_x, slack_y = max(cw / 2 - radius, 0.0), max(ch / 2 - radius, 0.0)
        cx = x0 + (c + 0.5) * cw + float(rng.uniform(-slack_x, slack_x))
        cy = y0 + (r + 0.5) * ch + float(rng.uniform(-slack_y, slack_y))
        fill = tuple(int(v) for v in np.clip(rgb + rng.uniform(-12, 12, size=3), 0, 255))
        outline = tuple(int(v * 0.6) for v in fill)
        width = max(1, int(radius / 12))
        _draw_shape(draw, group.shape, cx, cy, radius, fill, outline, width)


def _polygon(cx: float, cy: float, radius: float, sides: int, start_deg: float) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(math.radians(start_deg + 360 * i / sides)),
         cy + radius * math.sin(math.radians(start_deg + 360 * i / sides)))
        for i in range(sides)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                fill: tuple, outline: tuple, width: int) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        return
    if shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill, outline=outline, width=width)
        return
    if shape == "star":
        points = [
            (cx + (r if i % 2 == 0 else r * 0.45) * math.cos(math.radians(-90 + 36 * i)),
             cy + (r if i % 2 == 0 else r * 0.45) * math.sin(math.radians(-90 + 36 * i)))
            for i in range(10)
        ]
    else:
        sides, start = {"triangle": (3, -90), "hexagon": (6, 0), "diamond": (4, -90), "pentagon": (5, -90)}[shape]
        points = _polygon(cx, cy, r, sides, start)
    draw.polygon(points, fill=fill, outline=outline, width=width)


def _encode(image: Image.Image, quality: int = _JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception:  # any failure means "not a decodable image", which is what we want
        return False
    return True


def _near_duplicate(original: Path, rng: np.random.Generator) -> bytes:
    with Image.open(original) as im:
        image = im.convert("RGB")
    w, h = image.size
    op = int(rng.integers(3))  # 0: resize, 1: crop, 2: both; always re-encoded at another quality
    if op in (1, 2):
        left, top = int(w * rng.uniform(0.01, 0.03)), int(h * rng.uniform(0.01, 0.03))
        right, bottom = w - int(w * rng.uniform(0.01, 0.03)), h - int(h * rng.uniform(0.01, 0.03))
        image = image.crop((left, top, right, bottom))
    if op in (0, 2):
        scale = float(rng.uniform(0.8, 0.95))
        w, h = image.size
        image = image.resize((max(200, round(w * scale)), max(200, round(h * scale))), Image.Resampling.BILINEAR)
    return _encode(image, quality=int(rng.integers(60, 86)))


def _broken(scene: _Scene, bank: np.ndarray, rng: np.random.Generator) -> bytes:
    variant = int(rng.integers(3))
    if variant == 0:  # a download cut short: JPEG truncated inside the entropy-coded data
        data = _encode(_draw(scene, _canvas_size("clean", rng), bank, rng))
        return data[: int(len(data) * rng.uniform(0.2, 0.6))]
    if variant == 1:  # an HTML error page served as image/jpeg
        return (
            b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
            b"<p>The requested image was not found on this server.</p></body></html>\n"
        )
    while True:  # random bytes with a .jpg name
        data = rng.bytes(int(rng.integers(1000, 20000)))
        if not _decodes(data):
            return data


# ---------------------------------------------------------------- writing


def _build(images: Path, n: int, seed: int) -> tuple[pa.Table, set[str]]:
    plan_rng = np.random.default_rng([seed, 0])
    labels = _plan_labels(n, plan_rng)
    bank = np.random.default_rng([seed, 1]).standard_normal((_BANK_SIDE, _BANK_SIDE, 3), dtype=np.float32)
    width = max(6, len(str(n - 1)))
    row_rngs = [np.random.default_rng([seed, 2, i]) for i in range(n)]
    scenes = [_random_scene(r) for r in row_rngs]
    english = [_english(s, r) for s, r in zip(scenes, row_rngs, strict=True)]
    keys = [_scene_key(s) for s in scenes]

    urls: list[str] = [""] * n
    captions: list[str] = [""] * n
    true_captions: list[str | None] = [None] * n
    dup_of: list[str | None] = [None] * n
    langs: list[str | None] = ["en"] * n
    clean_rows: list[int] = []
    written: set[str] = set()

    def write(i: int, data: bytes) -> None:
        name = f"{i:0{width}d}.jpg"
        (images / name).write_bytes(data)
        written.add(name)

    for i, (label, scene, rng) in enumerate(zip(labels, scenes, row_rngs, strict=True)):
        urls[i] = f"images/{i:0{width}d}.jpg"
        captions[i] = english[i]
        true_captions[i] = english[i]
        if label in ("exact_duplicate", "near_duplicate"):
            j = clean_rows[int(rng.integers(len(clean_rows)))]
            captions[i], true_captions[i], dup_of[i] = captions[j], true_captions[j], urls[j]
            if label == "exact_duplicate":
                urls[i] = urls[j]
            else:
                write(i, _near_duplicate(images / Path(urls[j]).name, rng))
            continue
        if label == "missing_image":
            true_captions[i] = None
            continue
        if label == "broken_image":
            true_captions[i] = None
            write(i, _broken(scene, bank, rng))
            continue
        write(i, _encode(_draw(scene, _canvas_size(label, rng), bank, rng)))
        if label == "clean":
            clean_rows.append(i)
        elif label == "mismatched_caption":
            captions[i] = _other_caption(i, keys, english, rng)
        elif label == "boilerplate_caption":
            captions[i], langs[i] = _boilerplate(rng), None
        elif label == "boilerplate_suffix":
            captions[i] = _with_boilerplate(english[i], rng)
        elif label == "blocklisted_caption":
            captions[i] = _blocklisted(english[i], rng)
        elif label == "short_caption":
            captions[i], langs[i] = _short(scene, rng), None
        elif label == "non_english_caption":
            captions[i], langs[i] = _foreign(scene, rng)

    table = pa.table(
        {
            "url": pa.array(urls, pa.string()),
            "caption": pa.array(captions, pa.string()),
            "noise": pa.array(labels, pa.string()),
            "true_caption": pa.array(true_captions, pa.string()),
            "dup_of": pa.array(dup_of, pa.string()),
            "sample_id": pa.array(np.arange(n, dtype=np.int64)),
            "caption_lang": pa.array(langs, pa.string()),
        }
    )
    return table, written


def _other_caption(i: int, keys: list[tuple], english: list[str], rng: np.random.Generator) -> str:
    """The caption of another row whose scene differs from row ``i``'s."""
    for j in rng.permutation(len(keys)):
        if keys[j] != keys[i]:
            return english[int(j)]
    while True:  # every row shows the same scene: describe a different one
        scene = _random_scene(rng)
        if _scene_key(scene) != keys[i]:
            return _english(scene, rng)


def _sweep_stale(images: Path, written: set[str]) -> None:
    """Removes image files of an earlier corpus (our naming only), so a missing URL is really missing."""
    pattern = re.compile(r"\d{6,}\.jpg")
    for path in images.iterdir():
        if path.is_file() and pattern.fullmatch(path.name) and path.name not in written:
            path.unlink()

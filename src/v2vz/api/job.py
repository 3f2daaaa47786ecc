"""The one typed description of an edit, shared by the CLI, the daemon, the watch folder and the proto mapping.

It is torch-free on purpose: plugins and the client import it without the engine.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from v2vz.api.errors import InvalidArgument, RangeError
from v2vz.api.formats import OutputFormat, output_format

AttentionLayout = Literal["dense", "published", "sparse_causal", "per_frame"]
InversionMethod = Literal["direct", "null-text", "negative-prompt"]
InversionPrompt = Literal["source", "empty"]
VaeEncode = Literal["mean", "sample"]
RefinePadding = Literal["aligned", "identity"]
CutoffRule = Literal["nearest", "published"]
LrDecay = Literal["steps", "published"]
WindowLinks = Literal["chained", "anchored"]
EditMethod = Literal["vid2vid-zero", "flowedit"]

ATTENTION_LAYOUTS: tuple[str, ...] = get_args(AttentionLayout)  # for help texts; the Literal is the one list
INVERSIONS: tuple[str, ...] = get_args(InversionMethod)
METHODS: tuple[str, ...] = get_args(EditMethod)  # the engine's methods (v2vz_engine/methods.py): vid2vid-zero first
# The options that mean something to one method only; given with the other one, a job is refused in one line.
FLOWEDIT_OPTIONS = ("n_max", "n_min", "n_avg", "source_guidance")
# guidance's default is the method's: vid2vid-zero's classifier-free guidance, FlowEdit's target guidance (the
# published Wan 2.1 settings: source 5, target 13.5; v2vz_engine/flowedit.py says where they come from)
METHOD_GUIDANCE = {"vid2vid-zero": 7.5, "flowedit": 13.5}
FLOWEDIT_STRENGTH = 0.7  # n_max's default share of the steps (the published Wan settings: 35 of 50)
# Option names older versions wrote into journals; a record that has them still loads (EditOptions.from_record).
RETIRED_OPTIONS = frozenset({"fast_mode"})
PRESETS: tuple[str, ...] = ("default", "published")
MAX_WINDOW = 256
MAX_ANCHORS = 16
MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens (a few hundred characters); anything longer is a mistake
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_FRAMES = 1_000_000  # about 11 hours at 25 fps: a bound, so that no count overflows the journal or the wire
MAX_FPS = 1000
MAX_CODEC_CHARS = 100  # codec names are a few characters (formats.CODECS)
MAX_EDIT_ONLY_CHARS = 100  # a few words of the prompts (the wire's limit on an option's value)
MAX_MATTE_FEATHER = 1000  # pixels of the source

# The documented range of every numeric option (docs/daemon.md, "Limits and guarantees"), checked at submit.
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "steps": (1, 1000),
    "guidance": (1.0, 50.0),
    "seed": (0, 2**63 - 1),
    "size": (8, 4096),
    "null_inner_steps": (1, 100),
    "null_lr": (1e-6, 1.0),
    "null_start": (0.0, 1.0),
    "cross_replace": (0.0, 1.0),
    "refine_cross_replace": (0.0, 1.0),
    "window": (0, MAX_WINDOW),
    "anchors": (0, MAX_ANCHORS),
    "edit_only_threshold": (0.0, 1.0),
    "self_replace": (0.0, 1.0),
    "matte_feather": (0.0, MAX_MATTE_FEATHER),
    "n_max": (0, 1000),
    "n_min": (0, 999),
    "n_avg": (1, 32),
    "source_guidance": (1.0, 30.0),
}


@dataclass(frozen=True)
class EditOptions:
    """How the engine edits. `EditOptions()` is our default; `EditOptions.preset("published")` the paper's code.

    docs/method-differences.md explains every field where the two differ.
    """

    steps: int = 50
    guidance: float = 7.5
    seed: int = 33
    size: int | None = None  # long side of the working size; None: the model's native resolution
    inversion: InversionMethod = "direct"  # how the source branch is tied to the clip (docs/method-differences.md)
    fast: bool = False  # the old name of inversion="direct": True sets it (and reads back False)
    inversion_prompt: InversionPrompt = "source"
    null_inner_steps: int = 1
    null_lr: float = 1e-2
    null_lr_decay: LrDecay = "steps"  # "published": 1 - i/100 whatever the step count
    null_early_stop: bool = True
    null_start: float = 0.0  # fraction of the edit steps before the optimized nulls are used
    attention: AttentionLayout = "dense"
    # ResNet GroupNorm statistics over the clip's frames (the published 3-D UNet's) or per frame, as every SD model
    # was trained: per frame by default, measured in the trained world (docs/method-differences.md)
    joint_groupnorm: bool = False
    cross_replace: float = 0.8  # fraction of steps with the source's cross-attention maps (replace mode)
    refine_cross_replace: float = 0.8  # the same for refine mode (the published code uses 0.4)
    cross_replace_cutoff: CutoffRule = "nearest"  # "published": int(fraction * (steps + 1)) steps
    refine_padding: RefinePadding = "aligned"  # "identity": the published refine mapper's padding j -> j
    vae_encode: VaeEncode = "mean"
    window: int = 0  # frames edited together (attention spans them); 0: chosen from the working size and memory
    anchors: int = 2  # frames of the previous window every window also attends to (besides the clip's first)
    # "anchored": every window attends to anchors + 1 frames spread over the range, edited first (windows.py); the
    # windows then need nothing of each other and run in parallel on a cluster. "chained": the previous window's.
    window_links: WindowLinks = "chained"
    # Local edits (local_edit.py, docs/method-differences.md): the words whose cross-attention maps bound the edit
    # ("": the whole frame), the share of a frame's strongest response that counts as inside, and how far (pixels of
    # the source) a matte's edge is feathered.
    edit_only: str = ""
    edit_only_threshold: float = 0.3
    matte_feather: float = 0.0
    # Fraction of the steps whose self-attention (attn1) probabilities in the coarse layers are the source branch's
    # (prompt-to-prompt's self-attention replacement, self_replace.py): keeps layout and motion. 0: off.
    self_replace: float = 0.0
    # The method (v2vz_engine/methods.py): vid2vid-zero on a Stable Diffusion model (everything above), or FlowEdit
    # on a Wan 2.1 model (docs/methods.md): from step `steps - n_max` of the schedule, the target and source
    # velocities' difference averaged over `n_avg` noise draws, each branch with its own guidance (source_guidance,
    # and guidance for the target); the last n_min steps sample the target plainly.
    method: EditMethod = "vid2vid-zero"
    n_max: int = 0  # 0: 70% of the steps (the published Wan settings' strength 0.7: 35 of 50)
    n_min: int = 0
    n_avg: int = 1
    source_guidance: float = 5.0

    def __post_init__(self) -> None:
        """`fast` is kept so that old sidecars, clients and journal records still mean what they meant."""
        if self.fast:
            if self.inversion == "negative-prompt":
                raise InvalidArgument(
                    "fast is the old name of inversion = direct; it cannot go with inversion = negative-prompt"
                )
            object.__setattr__(self, "inversion", "direct")
            object.__setattr__(self, "fast", False)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> EditOptions:
        """Options from a journal record, which may be older than this version (retired names are dropped)."""
        return cls(**{name: value for name, value in data.items() if name not in RETIRED_OPTIONS})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EditOptions:
        """Options of a named preset, with explicit overrides on top."""
        if name == "default":
            base = cls()
        elif name == "published":
            base = cls(
                inversion="null-text",
                inversion_prompt="empty",
                null_inner_steps=1,
                null_lr_decay="published",
                null_start=0.5,
                attention="published",
                joint_groupnorm=True,
                cross_replace=0.8,
                refine_cross_replace=0.4,
                cross_replace_cutoff="published",
                refine_padding="identity",
                vae_encode="sample",
            )
        else:
            raise InvalidArgument(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        return base.replace(**overrides)

    def replace(self, **changes: Any) -> EditOptions:
        """A copy with some fields changed; unknown names are a user error, not a TypeError. A change of method
        that leaves guidance alone takes the new method's default guidance (METHOD_GUIDANCE) when the old one was
        at its method's default."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidArgument(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        changes = {k: v for k, v in changes.items() if v is not None}
        method = changes.get("method", self.method)
        at_default = self.guidance == METHOD_GUIDANCE.get(self.method)
        if method != self.method and "guidance" not in changes and method in METHOD_GUIDANCE and at_default:
            changes["guidance"] = METHOD_GUIDANCE[method]
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise InvalidArgument with one actionable line for the first bad value."""
        for name, (low, high) in OPTION_RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue  # size: the model's own
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgument(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and low <= value <= high):
                if name == "window":
                    low, unit = 1, f" frames (0: automatic), got {_short(value)}"
                else:
                    unit = f", got {_short(value)}"
                raise InvalidArgument(f"{name} must be between {low} and {high}{unit}")
        for name, allowed in OPTION_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.edit_only, str) or len(self.edit_only) > MAX_EDIT_ONLY_CHARS:
            raise InvalidArgument(
                f"edit-only is a few words of the prompts, at most {MAX_EDIT_ONLY_CHARS} characters, "
                f"got {_short(self.edit_only)}"
            )
        if self.edit_only.strip() and not edit_only_words(self.edit_only):
            raise InvalidArgument(f"edit-only {_short(self.edit_only)} has no word in it: give words of the prompts")
        self._validate_method()

    def _validate_method(self) -> None:
        """The options of the other method, and FlowEdit's schedule, in one line each."""
        default = EditOptions()
        if self.method == "flowedit":
            if self.n_max > self.steps:
                raise InvalidArgument(f"n-max must be at most steps ({self.steps}), got {self.n_max}")
            if self.n_min >= self.edit_steps:
                raise InvalidArgument(f"n-min must be below n-max ({self.edit_steps}), got {self.n_min}")
            for name, why in (
                ("edit_only", "it needs vid2vid-zero's cross-attention maps: give flowedit a matte instead"),
                ("self_replace", "it is vid2vid-zero's self-attention replacement"),
            ):
                if getattr(self, name) != getattr(default, name):
                    raise InvalidArgument(f"{name.replace('_', '-')} does not go with method flowedit: {why}")
            return
        changed = [name for name in FLOWEDIT_OPTIONS if getattr(self, name) != getattr(default, name)]
        if changed:
            names = ", ".join(name.replace("_", "-") for name in changed)
            raise InvalidArgument(f"{names} {'is' if len(changed) == 1 else 'are'} FlowEdit's: add --method flowedit")

    @property
    def edit_steps(self) -> int:
        """FlowEdit's n_max as it runs: the given one, else 70% of the steps (at least 1)."""
        return self.n_max or max(1, int(self.steps * FLOWEDIT_STRENGTH))

    @property
    def local(self) -> bool:
        """Whether the edit is bounded by words (a matte is the job's: EditJob.local)."""
        return bool(edit_only_words(self.edit_only))

    def inversion_key(self) -> dict[str, Any]:
        """The options an inversion depends on (never the target prompt): part of its cache key.

        Only null-text optimization uses the guidance and the null_* settings; direct and negative-prompt
        inversions are plain DDIM inversions, whatever guidance the edit then uses.
        """
        null_text = self.inversion == "null-text"
        return {
            "size": self.size,
            "joint_groupnorm": self.joint_groupnorm,
            "steps": self.steps,
            "inversion": self.inversion,
            "inversion_prompt": self.inversion_prompt,
            "guidance": self.guidance if null_text else None,
            "null_inner_steps": self.null_inner_steps if null_text else None,
            "null_lr": self.null_lr if null_text else None,
            "null_lr_decay": self.null_lr_decay if null_text else None,
            "null_early_stop": self.null_early_stop if null_text else None,
            "vae_encode": self.vae_encode,
            "seed": self.seed if self.vae_encode == "sample" else None,
        }


# The values each option typed as a Literal accepts, read from its type: the one place its choices are written
# (validate checks them, and wire.parse_option reads the same types).
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    name: get_args(kind) for name, kind in get_type_hints(EditOptions).items() if get_origin(kind) is Literal
}


def normal_word(word: str) -> str:
    """A word as `--edit-only` compares it: lower case, without the punctuation around it ("Car," -> "car")."""
    return word.strip(_PUNCTUATION).lower()


def prompt_words(prompt: str) -> list[str]:
    """A prompt's words as `--edit-only` compares them (normal_word of each whitespace-separated one)."""
    return [word for word in map(normal_word, prompt.split()) if word]


def edit_only_words(text: str) -> tuple[str, ...]:
    """The words of an `--edit-only` value ("car", "car wheels", "car,wheels"), as prompt_words spells them."""
    return tuple(dict.fromkeys(prompt_words(text.replace(",", " "))))


_PUNCTUATION = "\"'.,;:!?()[]{}<>"


def parse_fps(text: str | float | Fraction) -> Fraction:
    """A frame rate as an exact Fraction from "24", "23.976", "24000/1001"; InvalidArgument otherwise."""
    given = str(text).strip()
    try:
        if len(given) > 40:
            raise ValueError(given)
        fps = Fraction(given)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise InvalidArgument(f"frame rate {_short(given)} is not a number or a fraction like 24000/1001") from None
    if not 0 < fps <= MAX_FPS:
        raise InvalidArgument(f"frame rate {_short(given)} must be above 0 and at most {MAX_FPS} fps")
    return fps


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: object, limit: int = 40) -> str:
    """A value for a message, cut to `limit` characters (a 5 MB string or a 400-digit number stays one line)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_LORAS = 16  # style LoRAs stack a few at a time; a bound keeps the wire and the journal small
LORA_SCALE_RANGE = (-10.0, 10.0)
_SCALE_SUFFIX = re.compile(r":([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


@dataclass(frozen=True)
class Lora:
    """A LoRA the job applies to the model: its file, its scale and the sha256 of the file (set when the job is
    resolved: the inversion depends on the weights, so the cache key and a re-made take need the content)."""

    path: Path
    scale: float = 1.0
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Lora:
        """`PATH[:SCALE]` as `--lora` takes it; only a trailing `:number` is a scale (`C:\\x.safetensors` is a path)."""
        match = _SCALE_SUFFIX.search(text)
        if match and len(text) > len(match.group(0)):
            return cls(Path(text[: match.start()]), float(match.group(1)))
        return cls(Path(text))

    @classmethod
    def from_record(cls, data: Any) -> Lora:
        """A LoRA from a record: {"path", "scale", "digest"}, a [path, scale, digest] list or a `PATH[:SCALE]`."""
        if isinstance(data, str):
            return cls.parse(data)
        if isinstance(data, dict):
            return cls(Path(data["path"]), float(data.get("scale", 1.0)), data.get("digest") or None)
        path, scale, *digest = data
        return cls(Path(path), float(scale), (digest[0] if digest else None) or None)

    def to_record(self) -> dict[str, Any]:
        return {"path": str(self.path), "scale": self.scale, "digest": self.digest}

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


@dataclass(frozen=True)
class EditJob:
    """One edit: which frames of which clip, the two prompts, how, and where the result goes."""

    source: Path
    prompt: str
    source_prompt: str
    start: int = 0
    frames: int = 8  # 0: from start through the clip's last frame (resolved once the clip is probed)
    options: EditOptions = field(default_factory=EditOptions)
    output: Path | None = None  # a file (.mp4, .mov) or a frame pattern (shot_%04d.exr): v2vz.api.formats
    out_frames_dir: Path | None = None  # 8-bit PNG frames, each announced as it is written (what hosts place)
    model: str = "tiny"
    source_fps: Fraction | None = None  # an image sequence's frame rate (24 if not given); video files carry theirs
    codec: str | None = None  # None: the output container's default (formats.CONTAINER_CODECS)
    audio: bool = True  # keep the source's audio for the edited range
    overwrite: bool = False  # replace outputs that exist; otherwise such a job is refused (OutputExists)
    preview: bool = False  # the fast pass (its method's `preview`, v2vz_engine/methods.py), run ahead of queued finals
    take: int | None = None  # the take number reserved for the output (v2vz.api.takes)
    # A matte from the editor (docs/media.md, "Local edits"): a video, an image sequence or one image; white (or
    # alpha) = edit. Frame i of the range uses the matte's frame matte_start + i; one image serves every frame.
    matte: Path | None = None
    matte_start: int = 0
    matte_digest: str | None = None  # sha256 of the matte's files, set when the job is resolved (to re-make a take)
    mask_dir: Path | None = None  # where the local edit's final masks go, 8-bit grey PNGs (--save-mask)
    loras: tuple[Lora, ...] = ()  # applied to the model in this order (v2vz_engine.loras); scale 0: as if absent

    @property
    def local(self) -> bool:
        """Whether only part of each frame is edited (words, a matte, or both)."""
        return self.matte is not None or self.options.local

    @property
    def output_format(self) -> OutputFormat | None:
        """How `output` is written (its container and codec), or None without one."""
        return None if self.output is None else output_format(self.output, self.codec)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (for the daemon's journal, the watch folder's records and take sidecars)."""
        data = dataclasses.asdict(self)
        for name in ("source", "output", "out_frames_dir", "source_fps", "matte", "mask_dir"):
            data[name] = None if data[name] is None else str(data[name])
        data["loras"] = [lora.to_record() for lora in self.loras]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditJob:
        fields = dict(data)
        if "out_mp4" in fields:  # records of protocol 4 and older
            fields["output"] = fields.pop("out_mp4")
        fields["options"] = EditOptions.from_record(fields.get("options", {}))
        for name in ("source", "output", "out_frames_dir", "matte", "mask_dir"):
            if name in fields:
                fields[name] = None if fields[name] is None else Path(fields[name])
        if fields.get("source_fps") is not None:
            fields["source_fps"] = parse_fps(fields["source_fps"])
        fields["loras"] = tuple(Lora.from_record(lora) for lora in fields.get("loras") or ())
        return cls(**fields)

    def with_absolute_paths(self) -> EditJob:
        """This job with every path absolute and resolved (of this process's working directory): what a client
        sends and every record keeps, so that they say where the source, the matte and the outputs are from anywhere."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else Path(path).expanduser().resolve()

        paths = ("source", "output", "out_frames_dir", "matte", "mask_dir")
        loras = tuple(dataclasses.replace(lora, path=absolute(lora.path)) for lora in self.loras)
        return dataclasses.replace(self, loras=loras, **{name: absolute(getattr(self, name)) for name in paths})

    def through_end(self, clip_frames: int) -> EditJob:
        """This job with frames=0 ("through the end") made the count of frames the clip has from start on."""
        if self.frames:
            return self
        if self.start >= clip_frames:
            raise RangeError(
                f"start frame {self.start} is past the end of {self.source} ({clip_frames} frames, "
                f"0..{clip_frames - 1})"
            )
        return dataclasses.replace(self, frames=clip_frames - self.start)

    def validate(self) -> None:
        """Check what can be checked without opening the media; the engine checks the range against the clip."""
        paths = ("source", "output", "out_frames_dir", "matte", "mask_dir")
        for name in (*paths, "model", "codec", "prompt", "source_prompt"):
            value = getattr(self, name)
            if value is not None and "\x00" in str(value):  # no file system takes one; os calls raise ValueError
                raise InvalidArgument(f"the {name.replace('_', ' ')} has a NUL byte in it: remove it")
        if self.codec is not None and len(self.codec) > MAX_CODEC_CHARS:  # a sidecar's 1 MB codec: not in a message
            raise InvalidArgument(f"the codec is {len(self.codec)} characters long; at most {MAX_CODEC_CHARS}")
        for name in ("prompt", "source_prompt"):
            if len(getattr(self, name)) > MAX_PROMPT_CHARS:
                raise InvalidArgument(
                    f"the {name.replace('_', ' ')} has {len(getattr(self, name))} characters; at most "
                    f"{MAX_PROMPT_CHARS} are accepted (the text encoder reads 77 tokens, a few hundred characters)"
                )
        for name in paths:
            value = getattr(self, name)
            if value is not None and len(str(value)) > MAX_PATH_CHARS:
                raise InvalidArgument(f"{name} is {len(str(value))} characters long; at most {MAX_PATH_CHARS}")
        if len(self.model) > MAX_PATH_CHARS:
            raise InvalidArgument(f"the model name is {len(self.model)} characters long; at most {MAX_PATH_CHARS}")
        if not self.prompt.strip():
            raise InvalidArgument(
                "the prompt is empty: say what the edited clip should show, e.g. --prompt 'a jeep on snow'"
            )
        if not self.source_prompt.strip():
            raise InvalidArgument(
                "the source prompt is empty: describe what the clip shows now, e.g. --source-prompt 'a car on a road'"
            )
        if not 0 <= self.start < MAX_FRAMES:
            raise InvalidArgument(f"start must be between 0 and {MAX_FRAMES - 1}, got {_short(self.start)}")
        if not 0 <= self.frames <= MAX_FRAMES:
            raise InvalidArgument(
                f"frames must be 1 or more (0: through the end of the clip) and at most {MAX_FRAMES}, "
                f"got {_short(self.frames)}"
            )
        if self.source_fps is not None and not 0 < self.source_fps <= MAX_FPS:
            raise InvalidArgument(
                f"source frame rate must be above 0 and at most {MAX_FPS} fps, got {_short(self.source_fps)}"
            )
        if self.output is None and self.out_frames_dir is None:
            raise InvalidArgument("no output: give an output file (.mp4, .mov, shot_%04d.exr) or a folder for frames")
        if self.output is None and self.codec is not None:
            raise InvalidArgument(f"codec {self.codec} is for an output file: give one (.mp4, .mov, ...)")
        if self.output is not None:
            output_format(self.output, self.codec)
        if self.take is not None and not 1 <= self.take < MAX_FRAMES:
            raise InvalidArgument(f"take must be 1 or more, got {_short(self.take)}")
        self.options.validate()
        self._validate_local()
        self._validate_loras()

    def _validate_loras(self) -> None:
        """A few LoRAs, each a path and a finite scale in range (the files are checked when the job is resolved)."""
        if len(self.loras) > MAX_LORAS:
            raise InvalidArgument(f"{len(self.loras)} LoRAs given; at most {MAX_LORAS}")
        if self.loras and self.options.method == "flowedit":
            raise InvalidArgument("LoRAs are Stable Diffusion's: method flowedit (a Wan model) takes none: drop --lora")
        low, high = LORA_SCALE_RANGE
        for lora in self.loras:
            text = str(lora.path)
            if not text or text == "." or "\x00" in text or len(text) > MAX_PATH_CHARS:
                raise InvalidArgument(f"LoRA path {_short(text)} is not a file name: give --lora PATH[:SCALE]")
            scale = lora.scale
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
                raise InvalidArgument(f"the scale of LoRA {lora.path.name} must be a number, got {_short(scale)}")
            if not low <= scale <= high:
                name = lora.path.name
                raise InvalidArgument(f"the scale of LoRA {name} must be between {low} and {high}, got {scale:g}")

    def _validate_local(self) -> None:
        """The local edit's words are the prompts', a feather needs a matte, a mask folder a local edit."""
        words = edit_only_words(self.options.edit_only)
        known = list(dict.fromkeys(prompt_words(self.source_prompt) + prompt_words(self.prompt)))
        missing = [word for word in words if word not in known]
        if missing:
            raise InvalidArgument(
                f"edit-only word(s) {', '.join(map(repr, missing))} are in neither prompt; "
                f"the prompts' words: {_cut(', '.join(known), 300)}"
            )
        if not 0 <= self.matte_start < MAX_FRAMES:
            raise InvalidArgument(f"matte start must be between 0 and {MAX_FRAMES - 1}, got {_short(self.matte_start)}")
        if self.matte is None and (self.matte_start or self.options.matte_feather):
            raise InvalidArgument("matte start and matte feather are for a matte: give --matte too")
        if self.mask_dir is not None and not self.local:
            raise InvalidArgument(
                "--save-mask saves the mask of a local edit: give --edit-only WORDS or --matte PATH too"
            )

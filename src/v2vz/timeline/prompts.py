"""A clip's prompts: from a marker on it (docs/markers.md, the grammar every host reads) or its `metadata["v2vz"]`.

A marker counts when its name or comment has a `source:` or `prompt:` field. Markers are read by the one parser of
the grammar, `parse_marker` of plugins/host/v2vz_host.py (the Resolve scripts' too), and their values are then
checked as `v2vz edit` checks them. The metadata form is `{"source": "...", "prompt": "...", "options": {"steps":
30}, "matte": "...", "loras": [...]}`.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import LORA_SCALE_RANGE, MAX_LORAS, EditOptions, Lora
from v2vz.api.wire import parse_option
from v2vz.plugin_files import host

MARKER_NAME = "v2vz"
METADATA_KEY = "v2vz"
PROMPT_FROM = ("any", "markers", "metadata")
HOW_TO_MARK = (
    "add a marker whose name or comment says `source: <what the clip shows>` and `prompt: <the edit>` (one line "
    "each, or `source: ...; prompt: ...` in the name), or metadata v2vz = {source, prompt} in .otio"
)
_ALIASES = {"null_steps": "null_inner_steps"}  # `v2vz edit`'s flag names that differ from the option's
_FIELDS = {f.name: f for f in dataclasses.fields(EditOptions)}
MATTE_OPTIONS = ("matte", "matte_start")  # the job's, not EditOptions: taken out of a clip's options
LORA_OPTION = "lora"  # `--lora PATH[:SCALE]`, repeatable: the job's, kept apart from the name -> value options


@dataclass(frozen=True)
class ClipPrompts:
    source: str
    prompt: str
    options: dict[str, str] = field(default_factory=dict)  # option name -> wire string (v2vz.api.wire)
    origin: str = "marker"  # where they came from, for messages: "marker 'v2vz'", "metadata"
    note: str = ""  # other prompts on the clip that are not used (a second marker, metadata under a marker)
    matte: str = ""  # a local edit's matte as written (a path or file:// URL; relative: to the timeline's folder)
    matte_start: int = 0  # the matte's frame that goes with the media's first frame (clips.Candidate.matte_start)
    loras: tuple[str, ...] = ()  # `PATH[:SCALE]` as written, in order (relative: to the timeline's folder)
    model: str = ""  # a marker's `model:` ("": the run's)


class NotMarked(Exception):
    """The clip carries no prompts: it is not for v2vz (not a problem, not listed)."""


class BadPrompts(Exception):
    """The clip is marked for v2vz but its marker or metadata cannot be used: the message says why and what to do."""


def marker_text(marker: otio.schema.Marker) -> str:
    """Everything a marker says: its name, its comment, and a comment an adapter kept in its own metadata."""
    parts = [marker.name or "", getattr(marker, "comment", "") or ""]
    for stash in marker.metadata.values():  # fcp_xml keeps <comment> here; other adapters their own notes
        if hasattr(stash, "get") and not isinstance(stash, str):
            for key in ("comment", "note", "Comment", "Note"):
                value = stash.get(key)
                if isinstance(value, str) and value not in parts:
                    parts.append(value)
    return "\n".join(part for part in parts if part)


def options_from_text(text: str) -> dict[str, str]:
    """`--steps 30 --guidance=5 --fast` (or `steps=30`) as option name -> wire string, each checked (`--lora`
    left out: options_and_loras keeps those)."""
    return options_and_loras(text)[0]


def options_and_loras(text: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """An options line's options (name -> wire string, each checked) and its `--lora` values, every occurrence in
    order (a dict keeps one value per name, and a clip may stack several LoRAs)."""
    try:
        words = shlex.split(text or "")
    except ValueError as error:
        raise BadPrompts(f"its options line {text!r} cannot be read ({error})") from None
    options: dict[str, str] = {}
    loras: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word.startswith("-") and word != word.split()[0]:
            raise BadPrompts(
                f"its options line has {word!r} in quotes, as one word: write the options without quotes "
                "(quote only a value with spaces)"
            )
        name, sep, value = word.lstrip("-").partition("=")
        name = _ALIASES.get(name.replace("-", "_"), name.replace("-", "_"))
        is_flag = name in _FIELDS and _FIELDS[name].type in ("bool", bool)
        if not sep and not is_flag:
            if index + 1 >= len(words):
                raise BadPrompts(f"the option {word} in its options line needs a value")
            index += 1
            value = words[index]
        if name == LORA_OPTION:
            loras.append(value)
        else:
            options[name] = value if sep or not is_flag else "true"
        index += 1
    return checked_options(options), checked_loras(loras)


def checked_options(options: dict[str, Any]) -> dict[str, str]:
    """Option values as wire strings, each parsed as `v2vz edit` would (`preset` included)."""
    checked: dict[str, str] = {}
    for name, value in options.items():
        name = _ALIASES.get(str(name).replace("-", "_"), str(name).replace("-", "_"))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if name == "fast":
            name, text = "inversion", "direct"
        try:
            if name in MATTE_OPTIONS:
                _check_matte_option(name, text)
            elif name == LORA_OPTION:
                checked_loras([text])
            elif name == "preset":
                EditOptions.preset(text)
            else:
                parse_option(name, text)
        except InvalidArgument as error:
            raise BadPrompts(f"its options: {error}") from None
        checked[name] = text
    return checked


def _check_matte_option(name: str, text: str) -> None:
    if name == "matte" and not text.strip():
        raise InvalidArgument("the matte needs a path: --matte PATH")
    if name == "matte_start" and not (text.strip().isdigit() and int(text) < 1_000_000):
        raise InvalidArgument(f"option matte_start must be a whole number of frames from 0, got {text[:40]!r}")


def checked_loras(texts: Any) -> tuple[str, ...]:
    """`PATH[:SCALE]` texts as `--lora` takes them (v2vz.api.job.Lora.parse), each with a path and a scale in range;
    BadPrompts says which is not."""
    if isinstance(texts, str) or not hasattr(texts, "__iter__"):
        raise BadPrompts("its LoRAs are not a list of `PATH[:SCALE]` texts")
    checked = []
    for text in texts:
        if not isinstance(text, str):
            raise BadPrompts(f"its LoRAs hold {_kind(text)}, not a `PATH[:SCALE]` text")
        lora = Lora.parse(text.strip())
        if not str(lora.path).strip() or str(lora.path) == ".":
            raise BadPrompts("its options: a LoRA needs a path: --lora PATH[:SCALE]")
        low, high = LORA_SCALE_RANGE
        if not low <= lora.scale <= high:
            raise BadPrompts(
                f"its options: the scale of LoRA {lora.path.name} must be between {low:g} and {high:g}, got "
                f"{lora.scale:g}"
            )
        checked.append(text.strip())
    if len(checked) > MAX_LORAS:
        raise BadPrompts(f"its options: {len(checked)} LoRAs given; at most {MAX_LORAS}")
    return tuple(checked)


def with_loras(prompts: ClipPrompts, loras: tuple[str, ...] = ()) -> ClipPrompts:
    """The clip's LoRAs: `lora:` lines (or metadata `loras`), then `--lora` of its options, in order, every one kept;
    a `lora` left among name -> value options (metadata's `options`) is taken out, as the matte is."""
    options = dict(prompts.options)
    given = options.pop(LORA_OPTION, "")
    every = checked_loras([*prompts.loras, *loras, *([given] if given else [])])
    return dataclasses.replace(prompts, options=options, loras=every)


def with_matte(prompts: ClipPrompts, matte: str = "") -> ClipPrompts:
    """The matte of a `matte:` line (or metadata key) and of `--matte`/`--matte-start` among the options, taken out
    of the options (they are the job's); BadPrompts when the two name different mattes."""
    options = dict(prompts.options)
    given = options.pop("matte", "").strip()
    matte = (matte or "").strip()
    if given and matte and given != matte:
        raise BadPrompts(f"it names two mattes, {matte!r} and {given!r} (--matte): keep one")
    start = int(options.pop("matte_start", "0"))
    matte = matte or given
    if start and not matte:
        raise BadPrompts("its options: matte start is for a matte: add `matte: PATH`")
    return dataclasses.replace(prompts, options=options, matte=matte, matte_start=start)


def from_markers(clip: otio.schema.Clip) -> ClipPrompts:
    """The prompts of the clip's first marker (in time) that has a `source:` or `prompt:` field; NotMarked when none
    does and none is named v2vz. When later markers ask for other edits, the note says which one is used."""
    markers = sorted(clip.markers, key=lambda m: m.marked_range.start_time.to_seconds())
    read = [(marker, _read_marker(marker_text(marker))) for marker in markers]
    marked = [(marker, said) for marker, said in read if said is not None]
    if marked:
        first, said = marked[0]
        prompts = _prompts_of_marker(said, _marker_label(first))
        others = [_marker_label(m) for m, other in marked[1:] if _asked(other) != _asked(said)]
        if others:
            unused = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            note = f"it has {len(others) + 1} markers with different prompts: the first in time, {prompts.origin}, "
            prompts = _noted(prompts, note + f"is used; {unused} not")
        return prompts
    if any((marker.name or "").strip().lower() == MARKER_NAME for marker in markers):
        raise BadPrompts(
            "its v2vz marker has no `source:` and `prompt:` (a format that keeps only a marker's name needs them "
            "in the name: `source: a car; prompt: a jeep`)"
        )
    raise NotMarked


def _read_marker(text: str) -> Any:
    """parse_marker's result for a marker meant for v2vz (a `source:` or `prompt:` field), its MarkerError when it
    cannot be used, None for a marker that is not v2vz's."""
    grammar = host()
    try:
        fields, _ = grammar.marker_fields(text)
    except grammar.MarkerError as error:
        return error
    if not any(key in ("source", "prompt") for key, _ in fields):
        return None
    try:
        return grammar.parse_marker(text)
    except grammar.MarkerError as error:
        return error


def _asked(said: Any) -> Any:
    """What a marker asks for, to tell two markers that ask for different edits apart."""
    if isinstance(said, Exception):
        return ("error", str(said))
    return {key: value for key, value in said.as_dict().items() if key != "ignored"}


def _prompts_of_marker(said: Any, origin: str) -> ClipPrompts:
    """A parsed marker as the timeline's ClipPrompts, its values checked as `v2vz edit` checks them."""
    if isinstance(said, Exception):
        raise BadPrompts(str(said))
    options, loras = options_and_loras(shlex.join(said.options))
    extra = {"edit_only": said.edit_only} if said.edit_only else {}
    extra.update({"self_replace": repr(said.self_replace)} if said.self_replace else {})
    extra.update({"method": said.method} if said.method else {})
    options.update(checked_options(extra))
    prompts = ClipPrompts(said.source, said.prompt, options, origin, model=said.model.strip())
    prompts = dataclasses.replace(prompts, matte=said.matte.strip(), matte_start=said.matte_start)
    prompts = with_loras(prompts, tuple(said.loras) + loras)
    notes = []
    if said.preview:
        notes.append("its `preview: yes` is for a host that places a preview first: the timeline makes the final")
    if said.show_mask:
        notes.append("its `show mask: yes` is for Resolve: the timeline imports no masks")
    if said.ignored:
        notes.append(f"it has lines that are not v2vz keys, ignored: {', '.join(repr(line) for line in said.ignored)}")
    return _noted(prompts, "; ".join(notes)) if notes else prompts


def _noted(prompts: ClipPrompts, note: str) -> ClipPrompts:
    return dataclasses.replace(prompts, note=f"{prompts.note}; {note}" if prompts.note else note)


def _marker_label(marker: otio.schema.Marker) -> str:
    name = marker.name if len(marker.name or "") <= 60 else marker.name[:59] + "…"
    return f"marker {name!r}" if name else "a marker"


def from_metadata(clip: otio.schema.Clip) -> ClipPrompts:
    """The prompts of `metadata["v2vz"]`; NotMarked without it (or for an edit v2vz made)."""
    data = clip.metadata.get(METADATA_KEY)
    if data is None or is_edit(clip):
        raise NotMarked
    if not hasattr(data, "get"):
        raise BadPrompts('its metadata["v2vz"] is not a dictionary of source, prompt and options')
    fields = {
        "source": data.get("source", data.get("source_prompt")),
        "prompt": data.get("prompt"),
        "matte": data.get("matte"),
    }
    fields = {key: value for key, value in fields.items() if value is not None}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise BadPrompts(f'its metadata["v2vz"]["{key}"] is {_kind(value)}, not text')
    options = data.get("options")
    if isinstance(options, str):
        fields["options"] = options
    prompts = _complete({key: str(value).strip() for key, value in fields.items()}, "metadata")
    if options is not None and not isinstance(options, str):
        if not hasattr(options, "items"):
            raise BadPrompts('its metadata["v2vz"]["options"] is not a dictionary of edit options')
        checked = checked_options(dict(options.items()))
        prompts = with_matte(dataclasses.replace(prompts, options=checked), prompts.matte)
        prompts = with_loras(prompts)
    loras = data.get("loras")
    if loras is not None:
        if isinstance(loras, str) or not hasattr(loras, "__len__") or hasattr(loras, "items"):
            raise BadPrompts(f'its metadata["v2vz"]["loras"] is {_kind(loras)}, not a list of `PATH[:SCALE]` texts')
        prompts = with_loras(prompts, tuple(loras))
    return prompts


def _kind(value: Any) -> str:
    """A metadata value's type in words (OTIO's containers included)."""
    if hasattr(value, "items"):
        return "a dictionary"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if hasattr(value, "__len__") else type(value).__name__


def _complete(fields: dict[str, str], origin: str) -> ClipPrompts:
    missing = [key for key in ("source", "prompt") if not fields.get(key)]
    if missing:
        raise BadPrompts(
            f"its {origin} has no {' and no '.join(f'`{key}:`' for key in missing)}: " + HOW_TO_MARK.split(" (")[0]
        )
    options, loras = options_and_loras(fields["options"]) if fields.get("options") else ({}, ())
    lines = tuple(fields[LORA_OPTION].split("\n")) if LORA_OPTION in fields else ()
    prompts = ClipPrompts(fields["source"], fields["prompt"], options, origin, loras=lines)
    return with_loras(with_matte(prompts, fields.get("matte", "")), loras)


def prompts_of(clip: otio.schema.Clip, prompt_from: str = "any") -> ClipPrompts:
    """The clip's prompts from where `prompt_from` says (any: a marker, else the metadata)."""
    if prompt_from not in PROMPT_FROM:
        raise InvalidArgument(f"--prompt-from {prompt_from}: choose one of {', '.join(PROMPT_FROM)}")
    if prompt_from in ("any", "markers"):
        try:
            prompts = from_markers(clip)
        except NotMarked:
            if prompt_from == "markers":
                raise
        else:
            return _with_unused_metadata(clip, prompts) if prompt_from == "any" else prompts
    return from_metadata(clip)


def _with_unused_metadata(clip: otio.schema.Clip, prompts: ClipPrompts) -> ClipPrompts:
    """A marker wins over `metadata["v2vz"]`: when the metadata asks for another edit, the note says so."""
    try:
        other = from_metadata(clip)
    except (NotMarked, BadPrompts):
        return prompts
    if _asks(other) == _asks(prompts):
        return prompts
    note = f'its {prompts.origin} is used, not its metadata["v2vz"], which asks for another edit'
    return dataclasses.replace(prompts, note=f"{prompts.note}; {note}" if prompts.note else note)


def _asks(prompts: ClipPrompts) -> tuple:
    """The edit prompts ask for (not where they came from)."""
    return (prompts.source, prompts.prompt, prompts.options, prompts.matte, prompts.matte_start, prompts.loras) + (
        prompts.model,
    )


def is_edit(item: otio.core.SerializableObject) -> bool:
    """An item v2vz made (its metadata records a take or a job)."""
    data = item.metadata.get(METADATA_KEY) if hasattr(item, "metadata") else None
    return hasattr(data, "get") and (data.get("take") is not None or data.get("job_id") is not None)

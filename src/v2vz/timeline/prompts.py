"""A clip's prompts: from a marker on it (the Resolve script's convention) or from its `metadata["v2vz"]`.

A marker counts when its name or its comment has `source: <what the clip shows>` and `prompt: <the edit>`, one per
line or on one line (`source: a car; prompt: a jeep`, for formats that keep only a marker's name), optionally
`options: --steps 30 --guidance 5`. A marker named `v2vz` without them is a mistake and is reported. The metadata
form is `{"source": "...", "prompt": "...", "options": {"steps": 30}}`.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import opentimelineio as otio

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditOptions
from v2vz.api.wire import parse_option

MARKER_NAME = "v2vz"
METADATA_KEY = "v2vz"
PROMPT_FROM = ("any", "markers", "metadata")
HOW_TO_MARK = (
    "add a marker whose name or comment says `source: <what the clip shows>` and `prompt: <the edit>` (one line "
    "each, or `source: ...; prompt: ...` in the name), or metadata v2vz = {source, prompt} in .otio"
)
_KEY = re.compile(r"(?i)(?:^|(?<=[\s;|]))(source|prompt|options)\s*:")
_EDGES = " \t\r\n;|"
_ALIASES = {"null_steps": "null_inner_steps"}  # `v2vz edit`'s flag names that differ from the option's
_FIELDS = {f.name: f for f in dataclasses.fields(EditOptions)}


@dataclass(frozen=True)
class ClipPrompts:
    source: str
    prompt: str
    options: dict[str, str] = field(default_factory=dict)  # option name -> wire string (v2vz.api.wire)
    origin: str = "marker"  # where they came from, for messages: "marker 'v2vz'", "metadata"


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


def fields_of(text: str) -> dict[str, str]:
    """`source:`, `prompt:` and `options:` of a text, each up to the next key."""
    found: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        key = match.group(1).lower()
        found.setdefault(key, text[match.end() : end].strip(_EDGES))
    return found


def options_from_text(text: str) -> dict[str, str]:
    """`--steps 30 --guidance=5 --fast` (or `steps=30`) as option name -> wire string, each checked."""
    try:
        words = shlex.split(text or "")
    except ValueError as error:
        raise BadPrompts(f"its options line {text!r} cannot be read ({error})") from None
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        name, sep, value = word.lstrip("-").partition("=")
        name = _ALIASES.get(name.replace("-", "_"), name.replace("-", "_"))
        is_flag = name in _FIELDS and _FIELDS[name].type in ("bool", bool)
        if not sep and not is_flag:
            if index + 1 >= len(words):
                raise BadPrompts(f"the option {word} in its options line needs a value")
            index += 1
            value = words[index]
        options[name] = value if sep or not is_flag else "true"
        index += 1
    return checked_options(options)


def checked_options(options: dict[str, Any]) -> dict[str, str]:
    """Option values as wire strings, each parsed as `v2vz edit` would (`preset` included)."""
    checked: dict[str, str] = {}
    for name, value in options.items():
        name = _ALIASES.get(str(name).replace("-", "_"), str(name).replace("-", "_"))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if name == "fast":
            name, text = "inversion", "direct"
        try:
            if name == "preset":
                EditOptions.preset(text)
            else:
                parse_option(name, text)
        except InvalidArgument as error:
            raise BadPrompts(f"its options: {error}") from None
        checked[name] = text
    return checked


def from_markers(clip: otio.schema.Clip) -> ClipPrompts:
    """The prompts of the clip's first marker (in time) that has any; NotMarked when none names v2vz."""
    markers = sorted(clip.markers, key=lambda m: m.marked_range.start_time.to_seconds())
    named = None
    for marker in markers:
        text = marker_text(marker)
        fields = fields_of(text)
        if "source" in fields or "prompt" in fields:
            return _complete(fields, f"marker {marker.name!r}" if marker.name else "a marker")
        if named is None and (marker.name or "").strip().lower() == MARKER_NAME:
            named = marker
    if named is not None:
        raise BadPrompts(
            "its v2vz marker has no `source:` and `prompt:` (a format that keeps only a marker's name needs them "
            "in the name: `source: a car; prompt: a jeep`)"
        )
    raise NotMarked


def from_metadata(clip: otio.schema.Clip) -> ClipPrompts:
    """The prompts of `metadata["v2vz"]`; NotMarked without it (or for an edit v2vz made)."""
    data = clip.metadata.get(METADATA_KEY)
    if data is None or is_edit(clip):
        raise NotMarked
    if not hasattr(data, "get"):
        raise BadPrompts('its metadata["v2vz"] is not a dictionary of source, prompt and options')
    fields = {"source": data.get("source", data.get("source_prompt")), "prompt": data.get("prompt")}
    fields = {key: value for key, value in fields.items() if value is not None}
    options = data.get("options")
    if isinstance(options, str):
        fields["options"] = options
    prompts = _complete({key: str(value).strip() for key, value in fields.items()}, "metadata")
    if options is not None and not isinstance(options, str):
        if not hasattr(options, "items"):
            raise BadPrompts('its metadata["v2vz"]["options"] is not a dictionary of edit options')
        prompts = dataclasses.replace(prompts, options=checked_options(dict(options.items())))
    return prompts


def _complete(fields: dict[str, str], origin: str) -> ClipPrompts:
    missing = [key for key in ("source", "prompt") if not fields.get(key)]
    if missing:
        raise BadPrompts(
            f"its {origin} has no {' and no '.join(f'`{key}:`' for key in missing)}: " + HOW_TO_MARK.split(" (")[0]
        )
    options = options_from_text(fields["options"]) if fields.get("options") else {}
    return ClipPrompts(fields["source"], fields["prompt"], options, origin)


def prompts_of(clip: otio.schema.Clip, prompt_from: str = "any") -> ClipPrompts:
    """The clip's prompts from where `prompt_from` says (any: a marker, else the metadata)."""
    if prompt_from not in PROMPT_FROM:
        raise InvalidArgument(f"--prompt-from {prompt_from}: choose one of {', '.join(PROMPT_FROM)}")
    if prompt_from in ("any", "markers"):
        try:
            return from_markers(clip)
        except NotMarked:
            if prompt_from == "markers":
                raise
    return from_metadata(clip)


def is_edit(item: otio.core.SerializableObject) -> bool:
    """An item v2vz made (its metadata records a take or a job)."""
    data = item.metadata.get(METADATA_KEY) if hasattr(item, "metadata") else None
    return hasattr(data, "get") and (data.get("take") is not None or data.get("job_id") is not None)

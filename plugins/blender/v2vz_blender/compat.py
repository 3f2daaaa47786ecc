"""The VSE API differences between Blender 4.2 LTS and 5.2, in one place.

- 4.4 renamed `sequences` to `strips` (`sequences_all` to `strips_all`); 5.0 removed the old names.
- 5.0 changed `strips.new_effect(name, type, channel, frame_start, length=, input1=, input2=)` (was `frame_end=`,
  `seq1=`, `seq2=`) and added `context.sequencer_scene`.
- 5.1 renamed `frame_final_start/end/duration` to `left_handle/right_handle/duration`, `frame_start` to
  `content_start` and `frame_offset_start/end` to `left_handle_offset/right_handle_offset` (the old names are
  deprecated until 6.0).
"""

from __future__ import annotations

import bpy

UNSUPPORTED_TYPES = {
    "SPEED": "a speed effect strip",
    "SCENE": "a scene strip",
    "META": "a meta strip",
    "SOUND": "a sound strip",
}


def sequencer_scene(context=None):
    """The scene whose sequencer the user edits (5.0+: `context.sequencer_scene`, else `context.scene`)."""
    context = context or bpy.context
    return getattr(context, "sequencer_scene", None) or context.scene


def strips(collection_owner):
    """The top-level strips of a sequence editor (or a meta strip)."""
    return collection_owner.strips if hasattr(collection_owner, "strips") else collection_owner.sequences


def strips_all(editor):
    """Every strip of a sequence editor, meta contents included."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def left_handle(strip) -> int:
    """The first visible timeline frame (5.1 `left_handle`, before `frame_final_start`)."""
    return int(strip.left_handle if hasattr(strip, "left_handle") else strip.frame_final_start)


def right_handle(strip) -> int:
    """The timeline frame after the last visible one (5.1 `right_handle`, before `frame_final_end`)."""
    return int(strip.right_handle if hasattr(strip, "right_handle") else strip.frame_final_end)


def duration(strip) -> int:
    return right_handle(strip) - left_handle(strip)


def content_start(strip) -> float:
    """Where source frame 0 sits on the timeline (5.1 `content_start`, before `frame_start`)."""
    return float(strip.content_start if hasattr(strip, "content_start") else strip.frame_start)


def handle_offsets(strip) -> tuple[int, int]:
    """The trims: frames of the content hidden before the left handle and after the right one (5.1
    `left_handle_offset/right_handle_offset`, before `frame_offset_start/end`)."""
    if hasattr(strip, "left_handle_offset"):
        return int(strip.left_handle_offset), int(strip.right_handle_offset)
    return int(strip.frame_offset_start), int(strip.frame_offset_end)


def set_handle_offsets(strip, start: int, end: int) -> None:
    if hasattr(strip, "left_handle_offset"):
        strip.left_handle_offset, strip.right_handle_offset = start, end
    else:
        strip.frame_offset_start, strip.frame_offset_end = start, end


def hold_offset_start(strip) -> int:
    """Frames cut from the start of the media itself ("Hold Offset": `animation_offset_start`, `anim_startofs`)."""
    for name in ("animation_offset_start", "anim_startofs"):
        if hasattr(strip, name):
            return int(getattr(strip, name))
    return 0


def scene_fps(scene) -> float:
    return scene.render.fps / (scene.render.fps_base or 1.0)


def speed_effects_on(editor, strip) -> list:
    """The speed effect strips whose input is `strip`."""
    found = []
    for other in strips_all(editor):
        if other.type == "SPEED":
            inputs = [getattr(other, name, None) for name in ("input_1", "seq1")]
            if any(item is not None and item == strip for item in inputs):
                found.append(other)
    return found


def is_retimed(strip) -> bool:
    """Retiming keys (4.x+) that change the speed of the strip."""
    keys = getattr(strip, "retiming_keys", None)
    if not keys:
        return False
    return len(keys) > 2 or any(getattr(key, "speed", 1.0) not in (1.0, 0.0) for key in keys)


def new_image(editor, name: str, filepath: str, channel: int, frame_start: int):
    return strips(editor).new_image(name=name, filepath=filepath, channel=channel, frame_start=frame_start)


def new_effect(editor, name: str, kind: str, channel: int, frame_start: int, length: int, input1=None):
    """`strips.new_effect` with 5.0's `length=/input1=`, or the older `frame_end=/seq1=`."""
    collection = strips(editor)
    if bpy.app.version >= (5, 0, 0):
        kwargs = {"length": length}
        if input1 is not None:
            kwargs["input1"] = input1
    else:
        kwargs = {"frame_end": frame_start + length}
        if input1 is not None:
            kwargs["seq1"] = input1
    return collection.new_effect(name=name, type=kind, channel=channel, frame_start=frame_start, **kwargs)

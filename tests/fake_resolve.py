"""A fake of DaVinci Resolve's scripting API: only the calls in docs (shared hosts.md), with their quirks.

- Frames: GetStart/GetEnd/recordFrame are absolute timeline frames (a timeline at 01:00:00:00 starts at 86400 at
  24 fps, 108000 at 29.97); GetEnd and AppendToTimeline's endFrame are exclusive; source frames are the media's.
- A failed call returns None/False (or an empty list), it never raises.
- AppendToTimeline silently skips a clip that would overlap one already on its track.
- hasattr() is True for every name (unknown names are callables that return None): probe with dir().
- Timeline.GetSelectedClips exists only on FakeTimelineWithSelection (Resolve 21.0.4+).
- Takes (TimelineItem.AddTake, GetTakesCount, GetTakeByIndex, SelectTakeByIndex, GetSelectedTakeIndex,
  DeleteTakeByIndex, FinalizeTake) exist on the items AppendToTimeline places when the project is built with
  takes="yes" (the default); takes="no" is a Resolve without them (not in dir()), takes="refused" one whose AddTake
  returns False. As the README documents them: a plain item is no take selector (GetTakesCount() and
  GetSelectedTakeIndex() are 0); its first AddTake makes it one, with the item's own clip as take 1 and the added
  clip as take 2; indexes are 1-based; GetTakeByIndex gives {"startFrame", "endFrame", "mediaPoolItem"}; AddTake
  does not change the selection; without startFrame/endFrame it adds the clip's full extents (endFrame exclusive
  here, as for AppendToTimeline). The item keeps its record frame; a selected take shorter than the item shortens it.
Folder.GetName/GetSubFolderList/GetClipList, TimelineItem.GetClipColor/DeleteMarkerAtFrame,
Timeline.GetTrackName/DeleteClips, MediaPool.DeleteClips and MediaPoolItem.SetClipProperty/SetMetadata/GetMetadata
(also in the official scripting README) are here too, so that a script can reuse its bin, name its clips, replace a
clip and free a marker, and tests can look at the media pool.
"""

from __future__ import annotations

from pathlib import Path

CLIP_COLORS = {
    "Orange", "Apricot", "Yellow", "Lime", "Olive", "Green", "Teal", "Navy",
    "Blue", "Purple", "Violet", "Pink", "Tan", "Beige", "Brown", "Chocolate",
}  # fmt: skip
MARKER_COLORS = {
    "Blue", "Cyan", "Green", "Yellow", "Red", "Pink", "Purple", "Fuchsia",
    "Rose", "Lavender", "Sky", "Mint", "Lemon", "Sand", "Cocoa", "Cream",
}  # fmt: skip


class Fake:
    """hasattr() is True for every name, as on Resolve's objects: an unknown call returns None."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class FakeMediaPoolItem(Fake):
    def __init__(self, name: str, properties: dict) -> None:
        self.name, self.properties = name, dict(properties)
        self.properties.setdefault("Clip Name", name)
        self.metadata: dict[str, str] = {}

    def GetName(self):
        return self.name

    def GetClipProperty(self, key=None):
        if key is None:
            return dict(self.properties)
        return self.properties.get(key, "")

    def SetClipProperty(self, key, value):
        if key not in self.properties or key in ("File Path", "Frames", "Type"):
            return False
        self.properties[key] = str(value)
        if key == "Clip Name":
            self.name = str(value)
        return True

    def SetMetadata(self, key, value=None):
        if isinstance(key, dict):
            self.metadata.update({str(k): str(v) for k, v in key.items()})
            return True
        if not isinstance(key, str) or value is None:
            return False
        self.metadata[key] = str(value)
        return True

    def GetMetadata(self, key=None):
        return dict(self.metadata) if key is None else self.metadata.get(key, "")


def video_item(name: str, path: str, fps: float, frames: int, kind: str = "Video") -> FakeMediaPoolItem:
    return FakeMediaPoolItem(name, {"File Path": path, "FPS": f"{fps:g}", "Frames": str(frames), "Type": kind})


class FakeFolder(Fake):
    def __init__(self, name: str) -> None:
        self.name, self.subfolders, self.clips = name, [], []

    def GetName(self):
        return self.name

    def GetSubFolderList(self):
        return list(self.subfolders)

    def GetClipList(self):
        return list(self.clips)


class FakeTimelineItem(Fake):
    def __init__(
        self,
        name: str,
        start: int,
        duration: int,
        media: FakeMediaPoolItem | None,
        source_start: int = 0,
        source_end: int | None = None,
    ) -> None:
        self.name, self.start, self.duration, self.media = name, start, duration, media
        self.source_start = source_start
        self.source_end = source_start + duration if source_end is None else source_end  # exclusive here
        self.markers: dict[int, dict] = {}
        self.color = ""

    def GetName(self):
        return self.name

    def GetStart(self):
        return self.start

    def GetEnd(self):
        return self.start + self.duration

    def GetDuration(self):
        return self.duration

    def GetLeftOffset(self):
        return self.source_start

    def GetSourceStartFrame(self):
        return self.source_start

    def GetSourceEndFrame(self):
        return self.source_end

    def GetMediaPoolItem(self):
        return self.media

    def SetClipColor(self, color):
        if color not in CLIP_COLORS:
            return False
        self.color = color
        return True

    def ClearClipColor(self):
        self.color = ""
        return True

    def GetClipColor(self):
        return self.color

    def AddMarker(self, frameId, color, name, note, duration, customData=""):
        frame = int(frameId)
        if color not in MARKER_COLORS or not 0 <= frame < self.duration or frame in self.markers or duration < 1:
            return False
        self.markers[frame] = {
            "color": color,
            "duration": int(duration),
            "note": note,
            "name": name,
            "customData": customData,
        }
        return True

    def GetMarkers(self):
        return {frame: dict(marker) for frame, marker in self.markers.items()}

    def DeleteMarkerAtFrame(self, frameNum):
        return self.markers.pop(int(frameNum), None) is not None


class FakeTimelineItemWithTakes(FakeTimelineItem):
    """An item of a Resolve that has the documented take calls (a take selector once a take is added)."""

    def __init__(self, *args, refuse_takes: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.takes: list[dict] = []  # empty: not a take selector
        self.selected = 0
        self.span = self.duration  # the selector's extent on the timeline
        self.refuse_takes = refuse_takes

    def AddTake(self, mediaPoolItem, startFrame=None, endFrame=None):
        if self.refuse_takes or not isinstance(mediaPoolItem, FakeMediaPoolItem):
            return False
        frames = int(mediaPoolItem.GetClipProperty("Frames") or 0)
        first = 0 if startFrame is None else int(startFrame)
        end = frames if endFrame is None else int(endFrame)
        if not 0 <= first < end <= frames:
            return False
        if not self.takes:  # the item becomes a take selector: its own clip is take 1
            own = {"startFrame": self.source_start, "endFrame": self.source_start + self.duration}
            self.takes.append({**own, "mediaPoolItem": self.media})
            self.selected, self.span = 1, self.duration
        self.takes.append({"startFrame": first, "endFrame": end, "mediaPoolItem": mediaPoolItem})
        return True

    def GetTakesCount(self):
        return len(self.takes)

    def GetSelectedTakeIndex(self):
        return self.selected if self.takes else 0

    def GetTakeByIndex(self, idx):
        if not 1 <= int(idx) <= len(self.takes):
            return None
        return dict(self.takes[int(idx) - 1])

    def SelectTakeByIndex(self, idx):
        if not 1 <= int(idx) <= len(self.takes):
            return False
        self.selected = int(idx)
        self._show(self.takes[self.selected - 1])
        return True

    def DeleteTakeByIndex(self, idx):
        if not 1 <= int(idx) <= len(self.takes):
            return False
        del self.takes[int(idx) - 1]
        if not self.takes:
            self.selected = 0
            return True
        if int(idx) < self.selected or self.selected > len(self.takes):
            self.selected -= 1
        self._show(self.takes[self.selected - 1])
        return True

    def FinalizeTake(self):
        if not self.takes:
            return False
        self._show(self.takes[self.selected - 1])
        self.takes, self.selected = [], 0
        return True

    def _show(self, take: dict) -> None:
        self.media, self.name = take["mediaPoolItem"], take["mediaPoolItem"].GetName()
        self.source_start = int(take["startFrame"])
        self.duration = min(self.span, int(take["endFrame"]) - int(take["startFrame"]))
        self.source_end = self.source_start + self.duration


class FakeTimeline(Fake):
    def __init__(self, name: str, start_frame: int) -> None:
        self.name, self.start_frame = name, start_frame
        self.tracks: dict[str, list[list[FakeTimelineItem]]] = {"video": [[]], "audio": [[]], "subtitle": []}
        self.track_names: dict[tuple[str, int], str] = {}
        self.playhead = start_frame
        self.markers: dict[int, dict] = {}

    def GetName(self):
        return self.name

    def GetStartFrame(self):
        return self.start_frame

    def GetEndFrame(self):
        ends = [item.GetEnd() for track in self.tracks["video"] for item in track]
        return max(ends, default=self.start_frame)

    def GetTrackCount(self, trackType):
        return len(self.tracks.get(trackType, []))

    def GetItemListInTrack(self, trackType, index):
        tracks = self.tracks.get(trackType)
        if tracks is None or not 1 <= int(index) <= len(tracks):
            return None
        return sorted(tracks[int(index) - 1], key=lambda item: item.start)

    def AddTrack(self, trackType, *args):
        if trackType not in self.tracks:
            return False
        self.tracks[trackType].append([])
        return True

    def SetTrackName(self, trackType, index, name):
        if not 1 <= int(index) <= self.GetTrackCount(trackType):
            return False
        self.track_names[(trackType, int(index))] = name
        return True

    def GetTrackName(self, trackType, index):
        if not 1 <= int(index) <= self.GetTrackCount(trackType):
            return ""
        return self.track_names.get((trackType, int(index)), f"{trackType[:1].upper()}{int(index)}")

    def DeleteClips(self, timelineItems, ripple=False):
        items = list(timelineItems or [])
        lanes = [lane for tracks in self.tracks.values() for lane in tracks]
        if not items or not all(any(item in lane for lane in lanes) for item in items):
            return False
        for lane in lanes:
            lane[:] = [other for other in lane if other not in items]  # no ripple here: the others stay put
        return True

    def GetCurrentVideoItem(self):
        for track in reversed(self.tracks["video"]):
            for item in track:
                if item.start <= self.playhead < item.GetEnd():
                    return item
        return None

    def AddMarker(self, frameId, color, name, note, duration, customData=""):
        frame = int(frameId)  # an offset from the timeline's start
        if color not in MARKER_COLORS or frame < 0 or frame in self.markers:
            return False
        self.markers[frame] = {
            "color": color,
            "duration": duration,
            "note": note,
            "name": name,
            "customData": customData,
        }
        return True

    def GetMarkers(self):
        return {frame: dict(marker) for frame, marker in self.markers.items()}

    # for the tests
    def put(self, item: FakeTimelineItem, track: int = 1) -> FakeTimelineItem:
        while len(self.tracks["video"]) < track:
            self.tracks["video"].append([])
        self.tracks["video"][track - 1].append(item)
        return item


class FakeTimelineWithSelection(FakeTimeline):
    """A timeline of Resolve 21.0.4+, which has GetSelectedClips."""

    def __init__(self, name: str, start_frame: int) -> None:
        super().__init__(name, start_frame)
        self.selected: list[FakeTimelineItem] = []

    def GetSelectedClips(self):
        return list(self.selected)


TAKES = ("yes", "no", "refused")  # the take calls: documented; absent (an older Resolve); AddTake returns False


class FakeMediaPool(Fake):
    def __init__(self, project: FakeProject) -> None:
        self.project = project
        self.root = FakeFolder("Master")
        self.current = self.root

    def DeleteClips(self, clips):
        clips = list(clips or [])
        folders, found = [self.root], []
        while folders:
            folder = folders.pop()
            folders.extend(folder.subfolders)
            found += [clip for clip in clips if clip in folder.clips]
            folder.clips = [clip for clip in folder.clips if clip not in clips]
        return bool(clips) and len(found) == len(clips)

    def GetRootFolder(self):
        return self.root

    def AddSubFolder(self, folder, name):
        if not isinstance(folder, FakeFolder) or not name:
            return None
        sub = FakeFolder(name)
        folder.subfolders.append(sub)
        return sub

    def SetCurrentFolder(self, folder):
        if not isinstance(folder, FakeFolder):
            return False
        self.current = folder
        return True

    def ImportMedia(self, items):
        imported = []
        fps = float(self.project.GetSetting("timelineFrameRate"))
        for entry in items or []:
            if isinstance(entry, dict):
                pattern, first, last = entry.get("FilePath", ""), entry.get("StartIndex"), entry.get("EndIndex")
                if first is None or last is None or last < first:
                    continue
                files = [Path(pattern % index) for index in range(first, last + 1)]
                if not all(file.is_file() for file in files):
                    continue
                name = f"{Path(pattern).name.split('%')[0]}[{first:06d}-{last:06d}].png"
                item = video_item(name, pattern, fps, len(files), "Video")  # a sequence takes the project's fps
            else:
                if not Path(entry).is_file():
                    continue
                item = video_item(Path(entry).name, str(entry), fps, 1, "Still")
            self.current.clips.append(item)
            imported.append(item)
        return imported

    def AppendToTimeline(self, clips):
        timeline = self.project.timeline
        placed = []
        for info in clips or []:
            if not isinstance(info, dict) or not isinstance(info.get("mediaPoolItem"), FakeMediaPoolItem):
                continue
            media = info["mediaPoolItem"]
            frames = int(media.GetClipProperty("Frames") or 0)
            first, end = int(info.get("startFrame", 0)), int(info.get("endFrame", frames))  # end is exclusive
            track = int(info.get("trackIndex", 1))
            if not 0 <= first < end <= frames or not 1 <= track <= timeline.GetTrackCount("video"):
                continue
            lane = timeline.tracks["video"][track - 1]
            record = int(info.get("recordFrame", max((i.GetEnd() for i in lane), default=timeline.start_frame)))
            takes = self.project.takes
            if takes == "no":
                item = FakeTimelineItem(media.GetName(), record, end - first, media, first)
            else:
                item = FakeTimelineItemWithTakes(
                    media.GetName(), record, end - first, media, first, refuse_takes=takes == "refused"
                )
            if any(other.start < item.GetEnd() and item.start < other.GetEnd() for other in lane):
                continue  # Resolve skips an overlapping clip without saying so
            lane.append(item)
            placed.append(item)
        return placed


class FakeProject(Fake):
    def __init__(self, fps: str, timeline: FakeTimeline, takes: str = "yes") -> None:
        if takes not in TAKES:
            raise ValueError(f"takes is one of {TAKES}")
        self.settings = {"timelineFrameRate": fps}
        self.timeline = timeline
        self.takes = takes
        self.media_pool = FakeMediaPool(self)

    def GetCurrentTimeline(self):
        return self.timeline

    def GetMediaPool(self):
        return self.media_pool

    def GetSetting(self, name=None):
        return self.settings.get(name, "") if name else dict(self.settings)


class FakeProjectManager(Fake):
    def __init__(self, project: FakeProject | None) -> None:
        self.project = project

    def GetCurrentProject(self):
        return self.project


class FakeResolve(Fake):
    def __init__(self, project: FakeProject | None) -> None:
        self.manager = FakeProjectManager(project)

    def GetProjectManager(self):
        return self.manager

    def GetProductName(self):
        return "DaVinci Resolve"

"""A fake of DaVinci Resolve's scripting API: only the calls in docs (shared hosts.md), with their quirks.

- Frames: GetStart/GetEnd/recordFrame are absolute timeline frames (a timeline at 01:00:00:00 starts at 86400 at
  24 fps, 108000 at 29.97); GetEnd and AppendToTimeline's endFrame are exclusive; source frames are the media's.
- A failed call returns None/False (or an empty list), it never raises.
- AppendToTimeline silently skips a clip that would overlap one already on its track.
- hasattr() is True for every name (unknown names are callables that return None): probe with dir().
- Timeline.GetSelectedClips exists only on FakeTimelineWithSelection (Resolve 21.0.4+).
Folder.GetName/GetSubFolderList/GetClipList and TimelineItem.GetClipColor (also in the official scripting README)
are here too, so that a script can reuse its bin and tests can look at the media pool.
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

    def GetName(self):
        return self.name

    def GetClipProperty(self, key=None):
        if key is None:
            return dict(self.properties)
        return self.properties.get(key, "")


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


class FakeMediaPool(Fake):
    def __init__(self, project: FakeProject) -> None:
        self.project = project
        self.root = FakeFolder("Master")
        self.current = self.root

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
            item = FakeTimelineItem(media.GetName(), record, end - first, media, first)
            if any(other.start < item.GetEnd() and item.start < other.GetEnd() for other in lane):
                continue  # Resolve skips an overlapping clip without saying so
            lane.append(item)
            placed.append(item)
        return placed


class FakeProject(Fake):
    def __init__(self, fps: str, timeline: FakeTimeline) -> None:
        self.settings = {"timelineFrameRate": fps}
        self.timeline = timeline
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

--[[
A Lua fake of DaVinci Resolve's scripting API, the same as tests/fake_resolve.py (read its notes): colon-called
methods, lists as 1-based arrays, GetMarkers a table keyed by frame, GetTakeByIndex {startFrame, endFrame,
mediaPoolItem}. Frames are absolute timeline frames; GetEnd and endFrame are exclusive. A failed call returns
nil/false (or an empty list), never an error. A name an object does not have is a function that returns nil (as
Python's fake answers every name), so the script cannot tell a missing call from one that did nothing: a timeline
without selection returns nil from GetSelectedClips, an item of a Resolve without takes nil from AddTake, one that
refuses takes false.

  local fake = dofile("tests/fake_resolve.lua")
  local timeline = fake.timeline("Timeline 1", 90000, { selection = true })
  local project = fake.project("25", timeline, "yes")   -- takes: "yes", "no" or "refused"
  local resolve = fake.resolve(project)
]]

local fake = {}

local CLIP_COLORS, MARKER_COLORS = {}, {}
for color in ("Orange Apricot Yellow Lime Olive Green Teal Navy Blue Purple Violet Pink Tan Beige Brown Chocolate")
  :gmatch("%S+") do CLIP_COLORS[color] = true end
for color in ("Blue Cyan Green Yellow Red Pink Purple Fuchsia Rose Lavender Sky Mint Lemon Sand Cocoa Cream")
  :gmatch("%S+") do MARKER_COLORS[color] = true end

-- A class whose unknown names are calls that return nil.
local function class(base)
  local methods = setmetatable({}, {
    __index = function(_, name)
      if base then return base[name] end
      return function() return nil end
    end,
  })
  methods.__index = methods
  return methods
end

local function copy(t)
  local out = {}
  for key, value in pairs(t) do out[key] = value end
  return out
end

local function file_exists(path)
  local handle = io.open(path, "rb")
  if handle then handle:close() end
  return handle ~= nil
end

-- MediaPoolItem ---------------------------------------------------------------------------------------------------

local MediaPoolItem = class()
fake.MediaPoolItem = MediaPoolItem

function fake.media(name, properties)
  local item = setmetatable({ name = name, properties = copy(properties), metadata = {} }, MediaPoolItem)
  item.properties["Clip Name"] = item.properties["Clip Name"] or name
  return item
end

function fake.video_item(name, path, fps, frames, kind)
  return fake.media(name, { ["File Path"] = path, FPS = string.format("%g", fps), Frames = tostring(frames),
    Type = kind or "Video" })
end

function MediaPoolItem:GetName() return self.name end

function MediaPoolItem:GetClipProperty(key)
  if key == nil then return copy(self.properties) end
  return self.properties[key] or ""
end

function MediaPoolItem:SetClipProperty(key, value)
  if self.properties[key] == nil or key == "File Path" or key == "Frames" or key == "Type" then return false end
  self.properties[key] = tostring(value)
  if key == "Clip Name" then self.name = tostring(value) end
  return true
end

function MediaPoolItem:SetMetadata(key, value)
  if type(key) == "table" then
    for k, v in pairs(key) do self.metadata[tostring(k)] = tostring(v) end
    return true
  end
  if type(key) ~= "string" or value == nil then return false end
  self.metadata[key] = tostring(value)
  return true
end

function MediaPoolItem:GetMetadata(key)
  if key == nil then return copy(self.metadata) end
  return self.metadata[key] or ""
end

-- Folder ----------------------------------------------------------------------------------------------------------

local Folder = class()

function fake.folder(name)
  return setmetatable({ name = name, subfolders = {}, clips = {} }, Folder)
end

function Folder:GetName() return self.name end
function Folder:GetSubFolderList() return copy(self.subfolders) end
function Folder:GetClipList() return copy(self.clips) end

-- TimelineItem ----------------------------------------------------------------------------------------------------

local TimelineItem = class()
fake.TimelineItem = TimelineItem

function fake.item(name, start, duration, media, source_start, source_end)
  source_start = source_start or 0
  return setmetatable({ name = name, start = start, duration = duration, media = media, source_start = source_start,
    source_end = source_end or source_start + duration, markers = {}, color = "" }, TimelineItem)
end

function TimelineItem:GetName() return self.name end
function TimelineItem:GetStart() return self.start end
function TimelineItem:GetEnd() return self.start + self.duration end
function TimelineItem:GetDuration() return self.duration end
function TimelineItem:GetLeftOffset() return self.source_start end
function TimelineItem:GetSourceStartFrame() return self.source_start end
function TimelineItem:GetSourceEndFrame() return self.source_end end
function TimelineItem:GetMediaPoolItem() return self.media end

function TimelineItem:SetClipColor(color)
  if not CLIP_COLORS[color] then return false end
  self.color = color
  return true
end

function TimelineItem:ClearClipColor()
  self.color = ""
  return true
end

function TimelineItem:GetClipColor() return self.color end

function TimelineItem:AddMarker(frameId, color, name, note, duration, customData)
  local frame = math.floor(tonumber(frameId) or -1)
  if not MARKER_COLORS[color] or frame < 0 or frame >= self.duration or self.markers[frame] or (duration or 0) < 1 then
    return false
  end
  self.markers[frame] = { color = color, duration = math.floor(duration), note = note, name = name,
    customData = customData or "" }
  return true
end

function TimelineItem:GetMarkers()
  local out = {}
  for frame, marker in pairs(self.markers) do out[frame] = copy(marker) end
  return out
end

function TimelineItem:DeleteMarkerAtFrame(frameNum)
  local frame = math.floor(tonumber(frameNum) or -1)
  if not self.markers[frame] then return false end
  self.markers[frame] = nil
  return true
end

-- An item of a Resolve with the documented take calls (a take selector once a take is added).
local TakesItem = class(TimelineItem)
fake.TakesItem = TakesItem

function fake.takes_item(name, start, duration, media, source_start, refuse_takes)
  local item = fake.item(name, start, duration, media, source_start)
  item.takes, item.selected, item.span, item.refuse_takes = {}, 0, duration, refuse_takes or false
  return setmetatable(item, TakesItem)
end

function TakesItem:AddTake(mediaPoolItem, startFrame, endFrame)
  if self.refuse_takes or getmetatable(mediaPoolItem) ~= MediaPoolItem then return false end
  local frames = tonumber(mediaPoolItem:GetClipProperty("Frames")) or 0
  local first, finish = startFrame or 0, endFrame or frames
  if not (0 <= first and first < finish and finish <= frames) then return false end
  if #self.takes == 0 then -- the item becomes a take selector: its own clip is take 1
    self.takes[1] = { startFrame = self.source_start, endFrame = self.source_start + self.duration,
      mediaPoolItem = self.media }
    self.selected, self.span = 1, self.duration
  end
  self.takes[#self.takes + 1] = { startFrame = first, endFrame = finish, mediaPoolItem = mediaPoolItem }
  return true
end

function TakesItem:GetTakesCount() return #self.takes end

function TakesItem:GetSelectedTakeIndex()
  return #self.takes > 0 and self.selected or 0
end

function TakesItem:GetTakeByIndex(idx)
  local take = self.takes[math.floor(tonumber(idx) or 0)]
  return take and copy(take) or nil
end

function TakesItem:_show(take)
  self.media, self.name = take.mediaPoolItem, take.mediaPoolItem:GetName()
  self.source_start = take.startFrame
  self.duration = math.min(self.span, take.endFrame - take.startFrame)
  self.source_end = self.source_start + self.duration
end

function TakesItem:SelectTakeByIndex(idx)
  idx = math.floor(tonumber(idx) or 0)
  if idx < 1 or idx > #self.takes then return false end
  self.selected = idx
  self:_show(self.takes[idx])
  return true
end

function TakesItem:DeleteTakeByIndex(idx)
  idx = math.floor(tonumber(idx) or 0)
  if idx < 1 or idx > #self.takes then return false end
  table.remove(self.takes, idx)
  if #self.takes == 0 then
    self.selected = 0
    return true
  end
  if idx < self.selected or self.selected > #self.takes then self.selected = self.selected - 1 end
  self:_show(self.takes[self.selected])
  return true
end

function TakesItem:FinalizeTake()
  if #self.takes == 0 then return false end
  self:_show(self.takes[self.selected])
  self.takes, self.selected = {}, 0
  return true
end

-- Timeline --------------------------------------------------------------------------------------------------------

local Timeline = class()
local SelectionTimeline = class(Timeline)

function fake.timeline(name, start_frame, options)
  local timeline = { name = name, start_frame = start_frame, tracks = { video = { {} }, audio = { {} }, subtitle = {} },
    track_names = {}, playhead = start_frame, markers = {}, selected = {} }
  return setmetatable(timeline, (options and options.selection) and SelectionTimeline or Timeline)
end

function Timeline:GetName() return self.name end
function Timeline:GetStartFrame() return self.start_frame end

function Timeline:GetTrackCount(trackType)
  return #(self.tracks[trackType] or {})
end

function Timeline:GetItemListInTrack(trackType, index)
  local lane = (self.tracks[trackType] or {})[math.floor(tonumber(index) or 0)]
  if not lane then return nil end
  local items = copy(lane)
  table.sort(items, function(a, b) return a.start < b.start end)
  return items
end

function Timeline:AddTrack(trackType)
  if not self.tracks[trackType] then return false end
  table.insert(self.tracks[trackType], {})
  return true
end

function Timeline:SetTrackName(trackType, index, name)
  if index < 1 or index > self:GetTrackCount(trackType) then return false end
  self.track_names[trackType .. index] = name
  return true
end

function Timeline:GetTrackName(trackType, index)
  if index < 1 or index > self:GetTrackCount(trackType) then return "" end
  return self.track_names[trackType .. index] or (trackType:sub(1, 1):upper() .. index)
end

function Timeline:DeleteClips(timelineItems)
  local doomed = {}
  for _, item in pairs(timelineItems or {}) do doomed[item] = false end
  if next(doomed) == nil then return false end
  for _, tracks in pairs(self.tracks) do
    for _, lane in ipairs(tracks) do
      for _, item in ipairs(lane) do
        if doomed[item] ~= nil then doomed[item] = true end
      end
    end
  end
  for _, found in pairs(doomed) do
    if not found then return false end
  end
  for _, tracks in pairs(self.tracks) do
    for index, lane in ipairs(tracks) do
      local kept = {}
      for _, item in ipairs(lane) do
        if doomed[item] == nil then kept[#kept + 1] = item end
      end
      tracks[index] = kept -- no ripple here: the others stay put
    end
  end
  return true
end

function Timeline:GetCurrentVideoItem()
  for index = #self.tracks.video, 1, -1 do
    for _, item in ipairs(self.tracks.video[index]) do
      if item.start <= self.playhead and self.playhead < item:GetEnd() then return item end
    end
  end
  return nil
end

-- for the tests
function Timeline:put(item, track)
  track = track or 1
  while #self.tracks.video < track do table.insert(self.tracks.video, {}) end
  table.insert(self.tracks.video[track], item)
  return item
end

function SelectionTimeline:GetSelectedClips()
  return copy(self.selected)
end

-- MediaPool, Project, ProjectManager, Resolve ---------------------------------------------------------------------

local MediaPool = class()

function MediaPool:GetRootFolder() return self.root end

function MediaPool:AddSubFolder(folder, name)
  if getmetatable(folder) ~= Folder or not name or name == "" then return nil end
  local sub = fake.folder(name)
  table.insert(folder.subfolders, sub)
  return sub
end

function MediaPool:SetCurrentFolder(folder)
  if getmetatable(folder) ~= Folder then return false end
  self.current = folder
  return true
end

function MediaPool:DeleteClips(clips)
  local wanted, found, count = {}, 0, 0
  for _, clip in pairs(clips or {}) do
    wanted[clip] = true
    count = count + 1
  end
  local folders = { self.root }
  while #folders > 0 do
    local folder = table.remove(folders)
    for _, sub in ipairs(folder.subfolders) do folders[#folders + 1] = sub end
    local kept = {}
    for _, clip in ipairs(folder.clips) do
      if wanted[clip] then found = found + 1 else kept[#kept + 1] = clip end
    end
    folder.clips = kept
  end
  return count > 0 and found == count
end

-- Image sequences ({FilePath = "dir/frame_%06d.png", StartIndex, EndIndex}) or single files (stills).
function MediaPool:ImportMedia(items)
  local imported = {}
  local fps = tonumber(self.project:GetSetting("timelineFrameRate"))
  for _, entry in ipairs(items or {}) do
    local item
    if type(entry) == "table" then
      local pattern, first, last = entry.FilePath or "", entry.StartIndex, entry.EndIndex
      if first and last and last >= first then
        local all = true
        for index = first, last do all = all and file_exists(string.format(pattern, index)) end
        if all then
          local stem = pattern:match("([^/\\]*)$"):match("^([^%%]*)")
          local name = string.format("%s[%06d-%06d].png", stem, first, last)
          item = fake.video_item(name, pattern, fps, last - first + 1, "Video") -- a sequence takes the project's fps
        end
      end
    elseif file_exists(entry) then
      item = fake.video_item(entry:match("([^/\\]*)$"), entry, fps, 1, "Still")
    end
    if item then
      table.insert(self.current.clips, item)
      imported[#imported + 1] = item
    end
  end
  return imported
end

function MediaPool:AppendToTimeline(clips)
  local timeline, placed = self.project.timeline, {}
  for _, info in ipairs(clips or {}) do
    local media = type(info) == "table" and info.mediaPoolItem
    if getmetatable(media) == MediaPoolItem then
      local frames = tonumber(media:GetClipProperty("Frames")) or 0
      local first, finish = info.startFrame or 0, info.endFrame or frames -- endFrame is exclusive
      local track = info.trackIndex or 1
      if 0 <= first and first < finish and finish <= frames and track >= 1 and track <= timeline:GetTrackCount("video")
      then
        local lane = timeline.tracks.video[track]
        local record = info.recordFrame
        if not record then
          record = timeline.start_frame
          for _, other in ipairs(lane) do record = math.max(record, other:GetEnd()) end
        end
        local item
        if self.project.takes == "no" then
          item = fake.item(media:GetName(), record, finish - first, media, first)
        else
          item = fake.takes_item(media:GetName(), record, finish - first, media, first, self.project.takes == "refused")
        end
        local clash = false
        for _, other in ipairs(lane) do
          clash = clash or (other.start < item:GetEnd() and item.start < other:GetEnd())
        end
        if not clash then -- Resolve skips an overlapping clip without saying so
          table.insert(lane, item)
          placed[#placed + 1] = item
        end
      end
    end
  end
  return placed
end

local Project = class()

function fake.project(fps, timeline, takes)
  takes = takes or "yes"
  assert(takes == "yes" or takes == "no" or takes == "refused", "takes is yes, no or refused")
  local project = setmetatable({ settings = { timelineFrameRate = fps }, timeline = timeline, takes = takes }, Project)
  local root = fake.folder("Master")
  project.media_pool = setmetatable({ project = project, root = root, current = root }, MediaPool)
  return project
end

function Project:GetCurrentTimeline() return self.timeline end
function Project:GetMediaPool() return self.media_pool end

function Project:GetSetting(name)
  if name then return self.settings[name] or "" end
  return copy(self.settings)
end

local ProjectManager = class()
function ProjectManager:GetCurrentProject() return self.project end

local Resolve = class()
function Resolve:GetProjectManager() return self.manager end
function Resolve:GetProductName() return "DaVinci Resolve" end

function fake.resolve(project)
  return setmetatable({ manager = setmetatable({ project = project }, ProjectManager) }, Resolve)
end

return fake

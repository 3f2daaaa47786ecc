--[[
One timeline of tests/plugins/test_resolve_lua.py's table, built on tests/fake_resolve.lua as the test builds it on
tests/fake_resolve.py, the Lua script run on it once per marker note, and what came out as plain data (the same
shape the test makes of the Python script's run): results, console lines, tracks, the v2vz bin, job markers.
]]

local function dump(script, fake_timeline, project, console, results, clips)
  local tracks = script.array()
  for index, lane in ipairs(fake_timeline.tracks.video) do
    local items = script.array()
    for _, item in ipairs(fake_timeline:GetItemListInTrack("video", index)) do
      local takes = script.array()
      for take = 1, item:GetTakesCount() or 0 do takes[#takes + 1] = item:GetTakeByIndex(take).mediaPoolItem:GetName() end
      items[#items + 1] = { start = item:GetStart(), duration = item:GetDuration(), media = item:GetMediaPoolItem()
        and item:GetMediaPoolItem():GetName() or "", takes = takes, selected = item:GetSelectedTakeIndex() or 0,
        color = item:GetClipColor(), folder = item:GetMediaPoolItem() and item:GetMediaPoolItem():GetClipProperty(
          "File Path"):match("^(.*)[/\\]") or "" }
    end
    tracks[index] = { name = fake_timeline:GetTrackName("video", index), items = items }
  end
  local bin = script.array()
  for _, folder in ipairs(project.media_pool.root.subfolders) do
    if folder.name == "v2vz" then
      for _, media in ipairs(folder.clips) do bin[#bin + 1] = media:GetName() end
    end
  end
  local markers = {}
  for _, clip in ipairs(clips) do
    local kinds = script.array()
    for _, marker in pairs(clip.markers) do
      if marker.name == "v2vz job" then kinds[#kinds + 1] = script.json.decode(marker.customData).kind end
    end
    table.sort(kinds)
    markers[clip.name] = kinds
  end
  return { tracks = tracks, bin = bin, console = console, results = results, markers = markers }
end

return function(script, repo, scenario)
  local fake = dofile(repo .. "/tests/fake_resolve.lua")
  local array = script.array
  local start = scenario.start_frame or 90000
  local timeline = fake.timeline("Timeline 1", start, { selection = scenario.selection })
  local clip = scenario.clip or {}
  local fps = clip.media_fps or 25
  timeline:put(fake.item("before", start, 100, fake.video_item("b", scenario.source, fps, 250)))
  local source_start = clip.source_start or 50
  local duration = clip.duration or 4
  local media = fake.video_item("bikes.mp4", scenario.source, fps, 250)
  local item = timeline:put(fake.item("bikes.mp4", start + 100, duration, media, source_start,
    clip.source_end or (source_start + duration)))
  local clips = { item }
  if scenario.second_clip then
    clips[2] = timeline:put(fake.item("cars.mp4", start + 200, duration, fake.video_item("cars.mp4", scenario.source,
      fps, 250), 10))
  end
  timeline.playhead = item.start + 1
  if scenario.select == "clip" then timeline.selected = { item } end
  if scenario.select == "both" then timeline.selected = clips end
  local project = fake.project(scenario.fps or "25", timeline, scenario.takes or "yes")
  local resolve = fake.resolve(project)
  local console, results = array(), array()
  script.output = function(line) console[#console + 1] = line end
  script.config.output_dir = scenario.out
  for _, note in ipairs(scenario.runs) do
    for _, each in ipairs(clips) do
      if note ~= "" then
        each.markers[2] = { color = "Blue", duration = 1, name = "v2vz", note = note, customData = "" }
      end
    end
    local run = array()
    for _, result in ipairs(script.main(resolve)) do
      run[#run + 1] = { state = result.state, kind = result.kind, track = result.track, take = result.take,
        clip = result.clip }
    end
    results[#results + 1] = run
  end
  return dump(script, timeline, project, console, results, clips)
end

"""`v2vz timeline`: re-prompt the marked clips of an editor's timeline and hand back the timeline with the edits.

OpenTimelineIO reads and writes the timeline (`.otio`, and through its adapter plugins FCP 7 XML, FCPX XML, CMX 3600
EDL, Kdenlive and AAF); docs/timelines.md says what survives in each. One module per job:

- `adapters.py`: which adapter a file's extension needs, reading and writing through it (with each format's fix-ups);
- `prompts.py`: a clip's prompts from its markers or its `metadata["v2vz"]`;
- `media.py`: a clip's media as the engine's own probe (v2vz.media, torch-free) sees it: rate, frames, timecode;
- `ranges.py`: OTIO's rational times as frames of the media, exactly (30000/1001 stays 30000/1001);
- `clips.py`: the clips to edit, and the reason for each marked clip that cannot be;
- `build.py`: the output timeline: the input unchanged plus a video track of the edits;
- `jobs.py`: one daemon job per clip (its take reserved first), followed to its end;
- `state.py`: the run's record beside OUT, so that `--no-wait` and an interrupted run re-attach to their jobs.
- `run.py`: a whole run (plan, submit, follow, write OUT), given the command's display and a way to connect.

Nothing here is imported by `v2vz --help` or any other command: the CLI imports it inside `v2vz timeline`, so the
`timeline` extra (`pip install 'v2vz[timeline]'`) stays optional.
"""

"""What a clip is, read with PyAV alone (torch-free): the probe the engine and `v2vz timeline` share, so both agree
on a clip's displayed size, frame rate, frame count and start timecode. Below the engine and the timeline; above
the contract (docs/architecture.md)."""

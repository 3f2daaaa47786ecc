"""The daemon's on-disk inversion cache (the disk LRU): round trips, LRU eviction, corrupt entries, reopening."""

from __future__ import annotations

import logging

import pytest
import torch

from v2vz.api.job import EditOptions
from v2vz_daemon.inversion_cache import InversionCache
from v2vz_engine.inversion import Inversion, cache_key

OPTIONS = EditOptions(steps=4).inversion_key()


def make_inversion(seed: int = 0, frames: int = 2, steps: int = 4) -> Inversion:
    generator = torch.Generator().manual_seed(seed)
    return Inversion(
        torch.randn(frames, 4, 8, 8, generator=generator),
        torch.randn(steps, 77, 16, generator=generator),
        {"source_prompt": "a car on a road", "model": "tiny", "frames": frames, "seed": seed},
        torch.rand(steps, 2, generator=generator, dtype=torch.float64),
    )


def key_for(name: str) -> str:
    return cache_key(name, 0, 2, 64, 64, "tiny", "a car", OPTIONS)


def test_put_then_get_round_trips_every_tensor_and_the_meta(tmp_path):
    cache = InversionCache(tmp_path / "cache")
    original = make_inversion(1)
    key = key_for("a")
    path = cache.put(key, original)
    assert path == tmp_path / "cache" / key[:2] / f"{key}.inv" and path.is_file()
    assert original.meta == make_inversion(1).meta  # put does not touch the caller's object
    loaded = cache.get(key)
    assert torch.equal(loaded.z_T, original.z_T)
    assert torch.equal(loaded.nulls, original.nulls)
    assert torch.equal(loaded.step_losses, original.step_losses) and loaded.step_losses.dtype == torch.float64
    assert loaded.meta == original.meta
    assert cache.size_bytes() == path.stat().st_size > 0


def direct_inversion(seed: int = 0, frames: int = 2, steps: int = 4) -> Inversion:
    trajectory = torch.randn(steps + 1, frames, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return Inversion(trajectory[0], meta={"inversion": "direct", "frames": frames}, trajectory=trajectory)


def test_a_direct_inversion_round_trips_its_trajectory_and_costs_what_it_holds(tmp_path):
    cache = InversionCache(tmp_path / "cache")
    original = direct_inversion(3)
    path = cache.put(key_for("direct"), original)
    loaded = cache.get(key_for("direct"))
    assert torch.equal(loaded.trajectory, original.trajectory) and torch.equal(loaded.z_T, original.z_T)
    assert loaded.nulls is None and loaded.step_losses is None and loaded.meta == original.meta
    payload = 5 * 2 * 4 * 8 * 8 * 4  # the trajectory in float32; z_T is its first latent, not stored again
    assert payload <= path.stat().st_size < payload + 1024  # plus the safetensors header and the meta


def test_an_entry_with_a_malformed_trajectory_is_a_miss(tmp_path):
    cache = InversionCache(tmp_path)
    broken = direct_inversion()
    broken.trajectory = broken.trajectory.flatten(0, 1)  # 4-D: frames and steps run together
    path = cache.put(key_for("a"), broken)
    assert cache.get(key_for("a")) is None and not path.exists()


def test_lru_eviction_drops_the_least_recently_used_and_get_protects(tmp_path):
    probe = InversionCache(tmp_path / "probe")
    entry_size = probe.put(key_for("probe"), make_inversion()).stat().st_size
    cache = InversionCache(tmp_path / "cache", max_bytes=int(entry_size * 3.5))
    a, b, c, d, e = (key_for(name) for name in "abcde")
    for n, key in enumerate((a, b, c)):
        cache.put(key, make_inversion(n))
    assert cache.size_bytes() == 3 * entry_size
    assert cache.get(a) is not None  # a is now the most recently used; b is the oldest
    cache.put(d, make_inversion(3))
    assert not cache.path(b).exists()
    assert all(cache.path(k).exists() for k in (a, c, d))
    cache.put(e, make_inversion(4))
    assert not cache.path(c).exists()
    assert [cache.path(k).exists() for k in (a, d, e)] == [True, True, True]
    assert cache.size_bytes() <= cache.max_bytes


def test_an_entry_bigger_than_the_cache_is_kept_alone(tmp_path):
    cache = InversionCache(tmp_path, max_bytes=10)
    cache.put(key_for("a"), make_inversion(0))
    path = cache.put(key_for("b"), make_inversion(1))
    assert not cache.path(key_for("a")).exists() and path.exists()
    assert cache.get(key_for("b")) is not None


def test_a_corrupt_entry_is_a_miss_and_is_removed(tmp_path, caplog):
    cache = InversionCache(tmp_path)
    key = key_for("a")
    path = cache.put(key, make_inversion())
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk or a bad copy
    with caplog.at_level(logging.WARNING, logger="v2vz_daemon.inversion_cache"):
        assert cache.get(key) is None
    assert not path.exists()
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert (cache.hits, cache.misses) == (0, 1)
    cache.put(key, make_inversion())  # the slot is usable again
    assert cache.get(key) is not None


def test_a_file_copied_under_another_key_is_not_served(tmp_path):
    cache = InversionCache(tmp_path)
    source = cache.put(key_for("a"), make_inversion())
    wrong = cache.path(key_for("b"))
    wrong.parent.mkdir(parents=True, exist_ok=True)
    wrong.write_bytes(source.read_bytes())
    assert cache.get(key_for("b")) is None and not wrong.exists()
    assert cache.get(key_for("a")) is not None


def test_hits_and_misses_are_counted(tmp_path):
    cache = InversionCache(tmp_path)
    assert cache.get(key_for("a")) is None
    cache.put(key_for("a"), make_inversion())
    cache.get(key_for("a"))
    cache.get(key_for("a"))
    assert cache.get(key_for("b")) is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_entries_and_their_lru_order_survive_reopening(tmp_path):
    first = InversionCache(tmp_path)
    size = first.put(key_for("a"), make_inversion(0)).stat().st_size
    first.put(key_for("b"), make_inversion(1))
    first.put(key_for("c"), make_inversion(2))
    del first
    second = InversionCache(tmp_path)
    loaded = second.get(key_for("a"))
    assert loaded is not None and torch.equal(loaded.z_T, make_inversion(0).z_T)
    assert second.size_bytes() == 3 * size
    del second
    third = InversionCache(tmp_path, max_bytes=int(size * 3.5))
    third.put(key_for("d"), make_inversion(3))  # b is the least recently used across all three objects
    assert [third.path(key_for(k)).exists() for k in "abcd"] == [True, False, True, True]


def test_clear_and_bad_keys(tmp_path):
    cache = InversionCache(tmp_path)
    for name in "ab":
        cache.put(key_for(name), make_inversion())
    cache.clear()
    assert cache.size_bytes() == 0 and cache.get(key_for("a")) is None
    for bad in ("../../etc/passwd", key_for("a")[:63], key_for("a").upper()):
        with pytest.raises(ValueError):
            cache.get(bad)


@pytest.mark.parametrize("inversion", ["direct", "null-text"])
def test_a_reprompt_from_the_cache_gives_exactly_the_frames_of_a_fresh_edit(pipeline, clip_frames, tmp_path, inversion):
    """The cached inversion (contiguous, as loaded from disk) and a fresh one (whose latents leave the VAE in another
    memory layout) run the edit through the same kernels: the re-prompt's frames are bit for bit a fresh edit's."""
    options = EditOptions(steps=3, inversion=inversion, null_inner_steps=2)
    first = pipeline.edit(clip_frames, "a rabbit in a meadow", "a fox in a meadow", options)
    cache = InversionCache(tmp_path)
    key = key_for(f"reprompt-{inversion}")
    cache.put(key, first.inversion)
    from_cache = pipeline.edit(
        clip_frames, "a rabbit in a meadow", "a wolf in a meadow", options, inversion=cache.get(key)
    )
    fresh = pipeline.edit(clip_frames, "a rabbit in a meadow", "a wolf in a meadow", options)
    assert (from_cache.frames == fresh.frames).all()

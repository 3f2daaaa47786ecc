"""The method travels with the job's options on every side: a watch sidecar, the wire, the journal's record."""

from __future__ import annotations

import pytest

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.wire import job_from_request, job_to_request
from v2vz.watchfolder.settings import resolve_job


def test_a_watch_sidecar_asks_for_flowedit_on_its_own_model(tmp_path):
    clip = tmp_path / "shot.mp4"
    clip.write_bytes(b"")
    (tmp_path / "shot.toml").write_text(
        'prompt = "a jeep"\nsource_prompt = "a car"\nmethod = "flowedit"\nmodel = "tiny-wan"\nn_avg = 2\n'
    )
    job = resolve_job(clip, tmp_path / "out")
    assert job.model == "tiny-wan" and job.options.method == "flowedit" and job.options.n_avg == 2
    assert job.options.guidance == 13.5  # the method's default guidance, as nothing else was given
    (tmp_path / "shot.toml").write_text('prompt = "a jeep"\nsource_prompt = "a car"\nn_max = 30\n')
    with pytest.raises(InvalidArgument, match="n-max is FlowEdit's: add --method flowedit"):
        resolve_job(clip, tmp_path / "out")


def test_the_method_and_its_options_survive_the_wire_and_the_record():
    options = EditOptions().replace(method="flowedit", n_max=30, n_min=2, n_avg=3, source_guidance=4.0)
    job = EditJob("/clips/a.mp4", "a jeep", "a car", frames=9, options=options, model="tiny-wan", output="/o/a.mp4")
    back = job_from_request(job_to_request(job), "tiny")
    assert back.options == options and back.model == "tiny-wan"
    assert EditJob.from_dict(job.to_dict()).options == options


def test_loras_do_not_go_with_flowedit():
    from v2vz.api.job import Lora

    options = EditOptions().replace(method="flowedit")
    job = EditJob(
        "/c/a.mp4", "a jeep", "a car", options=options, output="/o/a.mp4", loras=(Lora("/l/ink.safetensors"),)
    )
    with pytest.raises(InvalidArgument, match="LoRAs are Stable Diffusion's: method flowedit .a Wan model. takes none"):
        job.validate()

"""The daemon on a Ray cluster (`v2vz serve --workers N` or `--ray ADDRESS`): model workers as Ray actors.

connect.py starts or joins the cluster (token authentication always on), worker_actor.py is the actor that holds a
model and edits spans, dispatch.py places a job's spans on free workers and re-runs a span whose worker died, and
service.py is what the daemon sees of it all. Ray is imported only here, and only when a flag asks for a cluster.
"""

"""The daemon on a Ray cluster (`v2vz serve --workers N` or `--ray ADDRESS`): model workers as Ray actors.

connect.py starts or joins the cluster (token authentication always on), worker_actor.py is the actor that holds a
model and edits spans, driver.py is the child process that is Ray's driver (Ray ends its driver's process when the
cluster under it dies: the daemon must outlive that), dispatch.py places a job's spans on free workers and re-runs
a span whose worker died, and service.py is what the daemon sees of it all, restarts included. Ray is imported only
when a flag asks for a cluster: in the driver process (and, with --ray, by `serve` to check the token at once).
"""

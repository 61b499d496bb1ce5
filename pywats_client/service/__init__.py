"""The service: watch folders, convert files into queued reports, upload them. `loop` runs it on
the main thread; the other modules are its parts (watcher, pipeline, postaction, dispatcher,
uploader, status), its process control (daemon) and the one-shot paths (drain, oneshot).
"""

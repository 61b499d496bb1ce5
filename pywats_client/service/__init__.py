"""The service: watch folders, convert files, queue reports, upload them.

`loop` runs it on the main thread; `watcher` finds files that are ready, `pipeline` turns a
file into queued reports, `postaction` files the source away, `dispatcher` feeds the upload
workers and `uploader` talks to WATS. `status` is what the service tells the world,
`daemon` starts and stops it without systemd, `oneshot` does what the one-shot commands do,
and `drain` uploads now, on the calling thread, for them and the library.
"""

"""One instance's configuration: config.json, the environment, and the typed settings.

`settings` holds the typed, validated values everything else reads; `document` reads,
validates, edits and saves config.json; `secrets` encrypts secrets at rest and masks them.
"""
